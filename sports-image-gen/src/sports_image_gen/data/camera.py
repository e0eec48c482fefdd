"""The SoccerNet-calibration camera model, vectorised: what the challenge's own ``src/camera.py`` computes.

World frame of the challenge (sn-calibration ``SoccerPitch``): origin at the centre mark, x along the touch lines
(length, FIFA 105 m), y along the goal lines (width, 68 m), **z pointing down** (a camera above the pitch has a
negative z). The camera JSON the baseline writes (``camera_<name>.json``) holds pan / tilt / roll in degrees, the
position in metres, the focal lengths and principal point in pixels, and the full distortion of OpenCV's rational
model (radial k1..k6, tangential p1 p2, thin-prism s1..s4). Camera pixels belong to a (2 cx) x (2 cy) frame, which
need not be the jpg's size: ``scale_to`` maps them onto any image.

Equations (sn-calibration ``Camera.from_json_parameters``, ``distort``, ``project_point``):

    R = (R_pan R_tilt R_roll)^T,   p_cam = R (X - C),   behind when z_cam <= 1e-3
    x, y = p_cam[:2] / z_cam,   r^2 = x^2 + y^2
    q = (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 + k6 r^6)
    x'' = x q + 2 p1 x y + p2 (r^2 + 2 x^2) + s1 r^2 + s2 r^4
    y'' = y q + 2 p2 x y + p1 (r^2 + 2 y^2) + s3 r^2 + s4 r^4
    u = fx x'' + cx,   v = fy y'' + cy
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

# KaliCalib's uniform grid of pitch keypoints: 13 x 7 ground points, index k = 13 j + i.
GRID_X = np.linspace(-52.5, 52.5, 13)
GRID_Y = np.linspace(-34.0, 34.0, 7)
GRID_SHAPE = (7, 13)
NUM_GRID = 91

JSON_FIELDS = ("pan_degrees", "tilt_degrees", "roll_degrees", "position_meters", "x_focal_length", "y_focal_length",
               "principal_point", "radial_distortion", "tangential_distortion", "thin_prism_distortion")
_LENGTHS = {"position_meters": 3, "principal_point": 2, "radial_distortion": 6, "tangential_distortion": 2,
            "thin_prism_distortion": 4}


def grid_points() -> np.ndarray:
    """The 91 x 3 world points (x_i, y_j, 0) of the grid, row k = 13 j + i."""
    xx, yy = np.meshgrid(GRID_X, GRID_Y)  # 7 x 13, row j, column i
    return np.stack([xx.ravel(), yy.ravel(), np.zeros(NUM_GRID)], 1)


def pan_tilt_roll_to_rotation(pan: float, tilt: float, roll: float) -> np.ndarray:
    """World-to-camera rotation from radians: (R_pan R_tilt R_roll)^T, as sn-calibration builds it."""
    cp, sp, ct, st, cr, sr = np.cos(pan), np.sin(pan), np.cos(tilt), np.sin(tilt), np.cos(roll), np.sin(roll)
    r_pan = np.array([[cp, -sp, 0], [sp, cp, 0], [0, 0, 1]])
    r_tilt = np.array([[1, 0, 0], [0, ct, -st], [0, st, ct]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return (r_pan @ r_tilt @ r_roll).T


def rotation_to_pan_tilt_roll(rotation: np.ndarray) -> tuple[float, float, float]:
    """(pan, tilt, roll) in degrees of a world-to-camera rotation: sn-calibration's
    ``rotation_matrix_to_pan_tilt_roll``, the inverse of :func:`pan_tilt_roll_to_rotation`.

    The orientation O = R^T = R_pan R_tilt R_roll gives cos(tilt) = O[2, 2], and, with s = sign(sin(tilt)),
    pan = atan2(s O[0, 2], -s O[1, 2]) and roll = atan2(s O[2, 0], s O[2, 1]). Both tilt and -tilt solve it (pan and
    roll then turn by 180 degrees); camera operators keep the roll small, so the solution with the smaller |roll| is
    returned. Pan and roll come back in (-180, 180], tilt in [-180, 180].
    """
    orientation = np.asarray(rotation, dtype=np.float64).T
    # Rounding can push |cos(tilt)| just past 1 for a camera looking straight down: clip so arccos stays finite.
    first_tilt = float(np.arccos(np.clip(orientation[2, 2], -1.0, 1.0)))
    solutions = []
    for tilt in (first_tilt, -first_tilt):
        sign = 1.0 if np.sin(tilt) > 0 else -1.0
        pan = np.arctan2(sign * orientation[0, 2], -sign * orientation[1, 2])
        roll = np.arctan2(sign * orientation[2, 0], sign * orientation[2, 1])
        solutions.append((float(pan), tilt, float(roll)))
    first, second = solutions
    best = first if abs(first[2]) < abs(second[2]) else second  # sn-calibration's tie-break: the second
    return tuple(float(np.rad2deg(angle)) for angle in best)


@dataclass
class Camera:
    """A broadcast camera in the calibration challenge's convention (angles in degrees, pixels of a 2cx x 2cy frame)."""

    pan_degrees: float
    tilt_degrees: float
    roll_degrees: float
    position_meters: np.ndarray
    x_focal_length: float
    y_focal_length: float
    principal_point: np.ndarray
    radial_distortion: np.ndarray = field(default_factory=lambda: np.zeros(6))
    tangential_distortion: np.ndarray = field(default_factory=lambda: np.zeros(2))
    thin_prism_distortion: np.ndarray = field(default_factory=lambda: np.zeros(4))

    @classmethod
    def from_json_parameters(cls, params: dict, source: str = "camera") -> Camera:
        """From the baseline's camera JSON; a missing or malformed field raises naming ``source`` and the field."""
        values = {}
        for name in JSON_FIELDS:
            if name not in params:
                raise ValueError(f"{source}: field '{name}' is missing (expected the sn-calibration camera JSON "
                                 f"fields {', '.join(JSON_FIELDS)})")
            try:
                # numpy would read "1.5" and true as numbers: a JSON string or boolean is not a camera parameter.
                if any(isinstance(item, (str, bool, np.bool_)) for item in np.asarray(params[name], object).flat):
                    raise TypeError(name)
                value = np.asarray(params[name], dtype=np.float64)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{source}: field '{name}' is not numeric: {params[name]!r}") from error
            expected = _LENGTHS.get(name)
            if value.shape != ((expected,) if expected else ()) or not np.isfinite(value).all():
                shape = f"{expected} finite numbers" if expected else "one finite number"
                raise ValueError(f"{source}: field '{name}' should be {shape}, got {params[name]!r}")
            values[name] = value if expected else float(value)
        if values["x_focal_length"] <= 0 or values["y_focal_length"] <= 0 or (values["principal_point"] <= 0).any():
            raise ValueError(f"{source}: focal lengths and principal point must be positive, got "
                             f"{values['x_focal_length']}, {values['y_focal_length']}, {values['principal_point']}")
        return cls(**values)

    def to_json_parameters(self) -> dict:
        """The baseline's camera JSON (``camera_<name>.json``)."""
        out = {}
        for name in JSON_FIELDS:
            value = getattr(self, name)
            out[name] = np.asarray(value).tolist() if name in _LENGTHS else float(value)
        return out

    @property
    def rotation(self) -> np.ndarray:
        """World-to-camera rotation."""
        return pan_tilt_roll_to_rotation(*np.deg2rad([self.pan_degrees, self.tilt_degrees, self.roll_degrees]))

    @property
    def image_size(self) -> tuple[float, float]:
        """(width, height) of the frame the camera's pixels belong to: (2 cx, 2 cy)."""
        return 2 * float(self.principal_point[0]), 2 * float(self.principal_point[1])

    def scale_to(self, width: float, height: float) -> Camera:
        """The same camera with pixels of a ``width`` x ``height`` image of the same frame (focal and principal point
        scaled per axis; the distortion acts on normalised coordinates and is unchanged)."""
        sx, sy = width / self.image_size[0], height / self.image_size[1]
        return replace(self, x_focal_length=self.x_focal_length * sx, y_focal_length=self.y_focal_length * sy,
                       principal_point=np.array([self.principal_point[0] * sx, self.principal_point[1] * sy]))

    def to_camera_frame(self, points: np.ndarray) -> np.ndarray:
        """N x 3 world points -> N x 3 camera-frame points (z forward)."""
        return (np.asarray(points, dtype=np.float64) - self.position_meters) @ self.rotation.T

    def distort(self, xy: np.ndarray) -> np.ndarray:
        """N x 2 normalised image points -> distorted normalised points (OpenCV's rational + thin-prism model)."""
        k, p, s = self.radial_distortion, self.tangential_distortion, self.thin_prism_distortion
        x, y = xy[:, 0], xy[:, 1]
        r2 = x * x + y * y
        r4, r6 = r2 * r2, r2 * r2 * r2
        radial = (1 + k[0] * r2 + k[1] * r4 + k[2] * r6) / (1 + k[3] * r2 + k[4] * r4 + k[5] * r6)
        xd = x * radial + 2 * p[0] * x * y + p[1] * (r2 + 2 * x * x) + s[0] * r2 + s[1] * r4
        yd = y * radial + 2 * p[1] * x * y + p[0] * (r2 + 2 * y * y) + s[2] * r2 + s[3] * r4
        return np.stack([xd, yd], 1)

    def project(self, points: np.ndarray, distort: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """N x 3 world points -> (N x 2 pixels, N in-front flags). Points behind (z_cam <= 1e-3) get NaN pixels."""
        cam = self.to_camera_frame(points)
        front = cam[:, 2] > 1e-3
        z = np.where(front, cam[:, 2], 1.0)
        xy = cam[:, :2] / z[:, None]
        if distort:
            xy = self.distort(xy)
        uv = xy * np.array([self.x_focal_length, self.y_focal_length]) + self.principal_point
        uv[~front] = np.nan
        return uv, front

    def project_grid(self, width: float | None = None, height: float | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """The 91 grid points in a ``width`` x ``height`` image of the frame (default: the camera's own frame):
        (91 x 2 pixels, 91 visible flags: in front and inside the image)."""
        width, height = (width, height) if width is not None else self.image_size
        uv, front = self.scale_to(width, height).project(grid_points())
        inside = front & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
        return uv, inside

    def ground_points(self, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The inverse of ``project`` on the ground: N x 2 pixels -> (N x 2 world (x, y) where their rays meet the
        plane z = 0, N flags of rays that meet it in front of the camera). The distortion is undone by
        ``cv2.undistortPoints`` iterated to convergence (OpenCV's 12 coefficients are this model's)."""
        k, p, s = self.radial_distortion, self.tangential_distortion, self.thin_prism_distortion
        K = np.array([[self.x_focal_length, 0, self.principal_point[0]],
                      [0, self.y_focal_length, self.principal_point[1]], [0, 0, 1]])
        normalised = cv2.undistortPoints(np.asarray(uv, np.float64).reshape(-1, 1, 2), K,
                                         np.concatenate([k[:2], p, k[2:], s]),
                                         criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 1e-10))
        rays = normalised.reshape(-1, 2) @ self.rotation[:2] + self.rotation[2]  # camera (x, y, 1) to world: R^T
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -self.centre[2] / rays[:, 2]  # z down: a camera above the pitch has z < 0, a ray to the ground dz > 0
        hits = np.isfinite(t) & (t > 0)
        xy = self.centre[:2] + np.where(hits, t, np.nan)[:, None] * rays[:, :2]
        return xy, hits

    @property
    def centre(self) -> np.ndarray:
        """The camera centre in world coordinates (``position_meters``)."""
        return np.asarray(self.position_meters, dtype=np.float64)

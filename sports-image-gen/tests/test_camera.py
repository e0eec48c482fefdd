"""The sn-calibration camera model against hand-computed projections, OpenCV and sn-calibration's own arithmetic."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from sports_image_gen.data.camera import (
    JSON_FIELDS,
    Camera,
    grid_points,
    pan_tilt_roll_to_rotation,
    rotation_to_pan_tilt_roll,
)


def level_camera() -> Camera:
    """pan 0, tilt 90, roll 0: a level camera 20 m behind the bottom touch line side of the centre (y = +20), 5 m up
    (z = -5), f = 100 px, principal point (50, 40), no distortion.

    R = (R_pan R_tilt R_roll)^T = R_tilt(90)^T = [[1, 0, 0], [0, 0, 1], [0, -1, 0]], so p_cam = R (X - C) =
    (dx, dz, -dy): the camera looks along -y (towards the top touch line), image right is +x, image down is +z.
    """
    return Camera(pan_degrees=0.0, tilt_degrees=90.0, roll_degrees=0.0, position_meters=np.array([0.0, 20.0, -5.0]),
                  x_focal_length=100.0, y_focal_length=100.0, principal_point=np.array([50.0, 40.0]))


def broadcast_camera() -> Camera:
    """The camera of sn-calibration's README example (a main camera, 960 x 540 frame) with every distortion term
    non-zero, as a calibration method may write them."""
    return Camera(pan_degrees=14.862476218376278, tilt_degrees=78.83988009048775, roll_degrees=-2.2210919345134497,
                  position_meters=np.array([32.6100008989567, 67.9363036953344, -14.898134157887508]),
                  x_focal_length=3921.6013418112757, y_focal_length=3921.601341812138,
                  principal_point=np.array([480.0, 270.0]),
                  radial_distortion=np.array([0.3, -1.5, 2.0, 0.1, -0.2, 0.4]),
                  tangential_distortion=np.array([1e-3, -2e-3]),
                  thin_prism_distortion=np.array([2e-3, -1e-3, 1.5e-3, 5e-4]))


def test_level_camera_by_hand():
    camera = level_camera()
    np.testing.assert_allclose(camera.rotation, [[1, 0, 0], [0, 0, 1], [0, -1, 0]], atol=1e-15)
    # X = (3, 0, -1), 1 m above the ground: X - C = (3, -20, 4), p_cam = (3, 4, 20), normalised (0.15, 0.2),
    # u = 100 * 0.15 + 50 = 65, v = 100 * 0.2 + 40 = 60.
    # The centre mark: X - C = (0, -20, 5), p_cam = (0, 5, 20), normalised (0, 0.25): (50, 65), below the centre.
    uv, front = camera.project(np.array([[3.0, 0.0, -1.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(uv, [[65.0, 60.0], [50.0, 65.0]], atol=1e-12)
    assert front.all()


def test_sn_calibration_angle_convention():
    # sn-calibration's pan_tilt_roll_to_orientation for pan = tilt = 90 degrees, roll = 0:
    #   Rpan = [[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    #   Rtilt = [[1, 0, 0], [0, cos, -sin], [0, sin, cos]] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]], Rroll = I
    #   orientation = Rpan @ Rtilt @ Rroll = [[0, 0, 1], [1, 0, 0], [0, 1, 0]]; rotation = orientation^T.
    # Its columns are the camera axes in the world: right = +y, down = +z, forward = +x. A camera at (-60, 0, -5)
    # behind the left goal, 5 m up, sees the centre mark at p_cam = (0, 5, 60) and (0, 6, -5) at (6, 0, 60).
    camera = Camera(pan_degrees=90.0, tilt_degrees=90.0, roll_degrees=0.0, position_meters=np.array([-60.0, 0, -5]),
                    x_focal_length=600.0, y_focal_length=600.0, principal_point=np.array([480.0, 270.0]))
    np.testing.assert_allclose(camera.rotation, np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]]).T, atol=1e-15)
    uv, _ = camera.project(np.array([[0.0, 0.0, 0.0], [0.0, 6.0, -5.0]]))
    np.testing.assert_allclose(uv, [[480.0, 270.0 + 600 * 5 / 60], [480.0 + 600 * 6 / 60, 270.0]], atol=1e-9)

    # sn-calibration's Camera.from_json_parameters also spells the rotation out term by term (then overwrites it
    # with the transposed product above): the two agree, and so do we, for any angles.
    pan, tilt, roll = np.deg2rad([14.9, 78.8, -2.2])
    sp, cp, st, ct, sr, cr = np.sin(pan), np.cos(pan), np.sin(tilt), np.cos(tilt), np.sin(roll), np.cos(roll)
    spelled_out = np.array([[-sp * sr * ct + cp * cr, sp * cr + sr * cp * ct, sr * st],
                            [-sp * cr * ct - sr * cp, -sp * sr + cp * cr * ct, st * cr],
                            [sp * st, -st * cp, ct]])
    np.testing.assert_allclose(pan_tilt_roll_to_rotation(pan, tilt, roll), spelled_out, atol=1e-15)


def test_distortion_matches_opencv_rational_thin_prism():
    camera = broadcast_camera()
    points = grid_points()
    uv, front = camera.project(points)
    assert front.all()
    rvec, _ = cv2.Rodrigues(camera.rotation)
    tvec = -camera.rotation @ camera.position_meters
    K = np.array([[camera.x_focal_length, 0, camera.principal_point[0]],
                  [0, camera.y_focal_length, camera.principal_point[1]], [0, 0, 1]])
    k, p, s = camera.radial_distortion, camera.tangential_distortion, camera.thin_prism_distortion
    # OpenCV's 12 coefficients: k1 k2 p1 p2 k3 k4 k5 k6 s1 s2 s3 s4 (sn-calibration's k1..k6 are k[0..5]).
    dist = np.array([k[0], k[1], p[0], p[1], k[2], k[3], k[4], k[5], s[0], s[1], s[2], s[3]])
    expected, _ = cv2.projectPoints(points, rvec, tvec, K, dist)
    np.testing.assert_allclose(uv, expected[:, 0], rtol=0, atol=1e-6)
    # The distortion is not negligible here: without it the points move by pixels.
    undistorted, _ = camera.project(points, distort=False)
    assert np.abs(undistorted - uv).max() > 1.0


def test_points_behind_the_camera_are_not_in_front():
    camera = level_camera()
    # p_cam z = -(y - 20): (0, 30, 0) is 10 m behind; z_cam = 1e-4 is still "behind" (<= 1e-3), 2e-3 is in front.
    points = np.array([[0.0, 30.0, 0.0], [0.0, 20.0 - 1e-4, -5.0], [0.0, 20.0 - 2e-3, -5.0]])
    uv, front = camera.project(points)
    assert front.tolist() == [False, False, True]
    assert np.isnan(uv[:2]).all() and np.isfinite(uv[2]).all()


def test_scale_to_and_json_round_trip():
    camera = broadcast_camera()
    big = camera.scale_to(1920, 1080)
    assert big.image_size == (1920.0, 1080.0)
    assert big.x_focal_length == pytest.approx(2 * camera.x_focal_length)
    points = grid_points()
    np.testing.assert_allclose(big.project(points)[0], 2 * camera.project(points)[0], rtol=1e-12)
    params = camera.to_json_parameters()
    assert list(params) == list(JSON_FIELDS)
    back = Camera.from_json_parameters(params)
    assert back.to_json_parameters() == params
    np.testing.assert_array_equal(back.project(points)[0], camera.project(points)[0])


@pytest.mark.parametrize("field, value, message", [
    ("pan_degrees", None, "missing"),
    ("tilt_degrees", "78.8", "not numeric"),
    ("radial_distortion", [0.0, True, 0, 0, 0, 0], "not numeric"),
    ("position_meters", [1.0, 2.0], "3 finite numbers"),
    ("x_focal_length", float("nan"), "one finite number"),
])
def test_malformed_json_fields_name_the_field(field, value, message):
    params = broadcast_camera().to_json_parameters()
    if message == "missing":
        del params[field]
    else:
        params[field] = value
    with pytest.raises(ValueError, match=f"camera_7.json: field '{field}'.*{message}"):
        Camera.from_json_parameters(params, source="camera_7.json")


@pytest.mark.parametrize("angles", [(14.86, 78.84, -2.22), (-170.0, 60.0, 45.0), (95.0, 120.0, -89.0), (0.0, 1.0, 0.0)])
def test_rotation_to_pan_tilt_roll_round_trip(angles):
    rotation = pan_tilt_roll_to_rotation(*np.deg2rad(angles))
    np.testing.assert_allclose(rotation_to_pan_tilt_roll(rotation), angles, atol=1e-9)


def test_rotation_to_pan_tilt_roll_keeps_the_small_roll():
    # (pan, tilt, roll) and (pan + 180, -tilt, roll + 180) are the same rotation: R_z(180) R_x(-t) R_z(180) = R_x(t).
    rotation = pan_tilt_roll_to_rotation(*np.deg2rad([30.0, -80.0, 170.0]))
    angles = rotation_to_pan_tilt_roll(rotation)
    np.testing.assert_allclose(angles, (-150.0, 80.0, -10.0), atol=1e-9)
    np.testing.assert_allclose(pan_tilt_roll_to_rotation(*np.deg2rad(angles)), rotation, atol=1e-12)


def test_ground_points_by_hand_and_above_the_horizon():
    camera = level_camera()
    # (0, 10, 0) is 10 m ahead and 5 m down: u = 50, v = 40 + 100 * 5 / 10 = 90; (3, 15, 0): u = 50 + 100 * 3 / 5.
    xy, hits = camera.ground_points(np.array([[50.0, 90.0], [110.0, 140.0], [50.0, 30.0]]))
    np.testing.assert_allclose(xy[:2], [[0.0, 10.0], [3.0, 15.0]], atol=1e-9)
    assert hits.tolist() == [True, True, False]  # above the horizon (v < 40) the ray never meets the ground
    assert np.isnan(xy[2]).all()


def test_ground_points_invert_the_distorted_projection():
    camera = broadcast_camera()
    points = grid_points()
    uv, visible = camera.project_grid()  # in the frame: beyond it the distortion polynomial need not be invertible
    xy, hits = camera.ground_points(uv[visible])
    assert visible.sum() >= 5 and hits.all()
    np.testing.assert_allclose(xy, points[visible, :2], atol=1e-4)

import cv2
import pytest
import torch

from shared_utils.backbones import BACKBONES, create_backbone

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image ships the test photos")

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def imagenet_crop(rgb, size: int = 224) -> torch.Tensor:
    """Resize the short side to 256 and centre-crop 224, the ImageNet evaluation protocol."""
    h, w = rgb.shape[:2]
    s = 256 / min(h, w)
    rgb = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    h, w = rgb.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    crop = rgb[top:top + size, left:left + size]
    return torch.from_numpy(crop).permute(2, 0, 1).float().div(255)[None]


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("efficientnet_lite0")


def test_lite0_weights_are_real_imagenet_weights(lite0):
    with torch.no_grad():
        cat = lite0.logits(imagenet_crop(skimage_data.chelsea())).softmax(-1)[0]
        coffee = lite0.logits(imagenet_crop(skimage_data.coffee())).softmax(-1)[0]
    assert int(cat.argmax()) in CAT_CLASSES
    assert float(cat[CAT_CLASSES.start:CAT_CLASSES.stop].sum()) > 0.8
    assert int(coffee.argmax()) == ESPRESSO and float(coffee[ESPRESSO]) > 0.8


def test_random_init_is_not_imagenet():
    net = create_backbone("efficientnet_lite0", weights=None)
    with torch.no_grad():
        cat = net.logits(imagenet_crop(skimage_data.chelsea())).softmax(-1)[0]
    assert float(cat[CAT_CLASSES.start:CAT_CLASSES.stop].sum()) < 0.1


@pytest.mark.parametrize("name", BACKBONES)
def test_multiscale_features(name):
    net = create_backbone(name, weights=None)
    with torch.no_grad():
        feats = net(torch.rand(2, 3, 64, 96))
    assert net.strides == [4, 8, 16, 32]
    assert [f.shape[1] for f in feats] == net.channels
    assert [tuple(f.shape[2:]) for f in feats] == [(64 // s, 96 // s) for s in net.strides]


def test_stride_subset_stops_early():
    net = create_backbone("resnet18", weights=None, strides=(8, 16))
    with torch.no_grad():
        feats = net(torch.rand(1, 3, 64, 64))
    assert net.channels == [128, 256] and [f.shape[-1] for f in feats] == [8, 4]
    with pytest.raises(ValueError, match="strides"):
        create_backbone("resnet18", weights=None, strides=(2,))


# torchvision's parameter counts and key names: its .pth files must load with strict=True.
@pytest.mark.parametrize("name,params,keys", [
    ("resnet18", 11_689_512, ["conv1.weight", "layer1.0.conv2.weight", "layer2.0.downsample.1.running_var",
                              "fc.bias"]),
    ("resnet50", 25_557_032, ["layer1.0.conv3.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.bias"]),
    ("wide_resnet50_2", 68_883_240, ["layer3.5.conv2.weight", "fc.weight"]),
])
def test_resnets_match_torchvision_state_dicts(name, params, keys, tmp_path):
    net = create_backbone(name, weights=None)
    assert sum(p.numel() for p in net.parameters()) == params
    state = net.state_dict()
    assert all(k in state for k in keys)
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    loaded = create_backbone(name, weights=str(path))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


def test_weight_errors(tmp_path):
    with pytest.raises(ValueError, match="no offline ImageNet weights"):
        create_backbone("resnet18")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        create_backbone("resnet18", weights=str(tmp_path / "missing.pth"))
    wrong = tmp_path / "r18.pth"
    torch.save(create_backbone("resnet18", weights=None).state_dict(), wrong)
    with pytest.raises(RuntimeError, match="is not a resnet50 state dict"):
        create_backbone("resnet50", weights=str(wrong))
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("vgg16")


class _Head(torch.nn.Module):
    """A learned head on a backbone, as the projects build them."""

    def __init__(self, freeze: str, weights: str | None = "imagenet") -> None:
        super().__init__()
        self.backbone = create_backbone("efficientnet_lite0", weights=weights, strides=(8,), freeze=freeze)
        self.head = torch.nn.Conv2d(40, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[0])


def test_frozen_backbone_stays_in_eval_and_out_of_checkpoints(tmp_path):
    torch.manual_seed(0)
    model = _Head("all").train()
    assert not model.backbone.training and model.head.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert set(model.state_dict()) == {"head.weight", "head.bias"}  # only what is learned
    torch.save(model.state_dict(), tmp_path / "head.pt")
    assert (tmp_path / "head.pt").stat().st_size < 10_000

    reloaded = _Head("all")
    reloaded.load_state_dict(torch.load(tmp_path / "head.pt", weights_only=True), strict=True)
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(model.eval()(x), reloaded.eval()(x))
    # A checkpoint written before the rule (backbone tensors inside) still loads them.
    full = {f"backbone.{k}": v + 1 for k, v in create_backbone("efficientnet_lite0", strides=(8,)).state_dict().items()}
    reloaded.load_state_dict({**full, **model.state_dict()}, strict=True)
    assert torch.equal(reloaded.backbone._conv_stem.weight, model.backbone._conv_stem.weight + 1)


def test_batchnorm_freeze_trains_weights_with_pretrained_statistics():
    model = _Head("batchnorm").train()
    assert not model.backbone.training and all(p.requires_grad for p in model.backbone.parameters())
    assert any(k.startswith("backbone.") for k in model.state_dict())


def test_frozen_random_init_is_kept_in_checkpoints():
    # Random weights cannot be rebuilt at load time: they stay in the state dict.
    assert any(k.startswith("backbone.") for k in _Head("all", weights=None).state_dict())
    with pytest.raises(ValueError, match="freeze must be one of"):
        create_backbone("efficientnet_lite0", freeze="yes")

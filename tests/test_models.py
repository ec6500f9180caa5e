"""gk.models: torchvision's state_dict keys and shapes (reference lists built here from torchvision's
published architecture, no torch import), parameter counts, converted state dicts loading and driving
an eval-mode forward checked against a float64 NumPy forward written from the same description,
output shapes, and gradients against central differences."""
import copy
import math

import numpy as np
import pytest

import gradkit as gk
from gradkit import models

# -- torchvision's published architectures, as key lists ------------------------------------------
# torchvision/models/resnet.py: ResNet(BasicBlock, layers) with conv1 7x7/2 (64), bn1, layer1..layer4 of
# 64/128/256/512 channels (stride 2 from layer2 on), BasicBlock = conv1 3x3, bn1, conv2 3x3, bn2 and a
# downsample = (conv 1x1, bn) in a block where stride != 1 or the channels change; fc.
# torchvision/models/vgg.py: features from cfgs "A" (vgg11) and "D" (vgg16) with batch norm, each conv
# (3x3, bias) followed by BatchNorm2d and ReLU, "M" a MaxPool2d; classifier.0/.3/.6 Linear.
RESNET_LAYERS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}
VGG_CFGS = {
    "vgg11_bn": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16_bn": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}
# torchvision's documented parameter counts (the "num_params" of each model's weights metadata).
PUBLISHED_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "vgg11_bn": 132_868_840,
                    "vgg16_bn": 138_365_992}
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def bn_keys(prefix, c):
    return [(f"{prefix}.weight", (c,)), (f"{prefix}.bias", (c,)), (f"{prefix}.running_mean", (c,)),
            (f"{prefix}.running_var", (c,)), (f"{prefix}.num_batches_tracked", ())]


def resnet_keys(layers, num_classes=1000, widths=(64, 128, 256, 512), stem_kernel=7, in_channels=3):
    keys = [("conv1.weight", (widths[0], in_channels, stem_kernel, stem_kernel))] + bn_keys("bn1", widths[0])
    inplanes = widths[0]
    for i, (planes, blocks) in enumerate(zip(widths, layers)):
        stride = 1 if i == 0 else 2
        for b in range(blocks):
            p = f"layer{i + 1}.{b}"
            keys += [(f"{p}.conv1.weight", (planes, inplanes, 3, 3))] + bn_keys(f"{p}.bn1", planes)
            keys += [(f"{p}.conv2.weight", (planes, planes, 3, 3))] + bn_keys(f"{p}.bn2", planes)
            if b == 0 and (stride != 1 or inplanes != planes):
                keys += [(f"{p}.downsample.0.weight", (planes, inplanes, 1, 1))] + bn_keys(f"{p}.downsample.1", planes)
            inplanes = planes
    return keys + [("fc.weight", (num_classes, widths[-1])), ("fc.bias", (num_classes,))]


def vgg_keys(cfg, num_classes=1000):
    keys, i, cin = [], 0, 3
    for v in cfg:
        if v == "M":
            i += 1
            continue
        keys += [(f"features.{i}.weight", (v, cin, 3, 3)), (f"features.{i}.bias", (v,))]
        keys += bn_keys(f"features.{i + 1}", v)
        i, cin = i + 3, v  # conv, bn, relu
    for j, (fan_in, fan_out) in zip((0, 3, 6), ((512 * 7 * 7, 4096), (4096, 4096), (4096, num_classes))):
        keys += [(f"classifier.{j}.weight", (fan_out, fan_in)), (f"classifier.{j}.bias", (fan_out,))]
    return keys


def reference_keys(name, num_classes=1000):
    if name in RESNET_LAYERS:
        return resnet_keys(RESNET_LAYERS[name], num_classes)
    return vgg_keys(VGG_CFGS[name], num_classes)


def n_params(keys):
    return sum(math.prod(shape) for key, shape in keys if not key.endswith(BUFFERS))


@pytest.fixture(scope="module")
def zoo():
    """Each big model built once for the module (vgg16_bn has 138M parameters)."""
    built = {}

    def get(name):
        if name not in built:
            gk.manual_seed(0)
            built[name] = getattr(models, name)()
        return built[name]
    return get


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "vgg11_bn", "vgg16_bn"])
def test_state_dict_keys_shapes_and_counts_match_torchvision(zoo, name):
    ref = reference_keys(name)
    assert n_params(ref) == PUBLISHED_PARAMS[name]  # the reference list itself is torchvision's
    model = zoo(name)
    sd = model.state_dict()
    assert [(k, v.shape) for k, v in sd.items()] == ref  # same keys, shapes and order
    assert sum(p.data.size for p in model.parameters()) == PUBLISHED_PARAMS[name]
    assert [k for k, _ in model.named_parameters()] == [k for k, _ in ref if not k.endswith(BUFFERS)]
    for key, value in sd.items():
        want = np.int64 if key.endswith("num_batches_tracked") else np.float32
        assert value.dtype == want, f"{key}: {value.dtype}"


def test_cifar_resnets_keys_and_counts():
    for fn, n, count in [(models.resnet20, 3, 272_474), (models.resnet56, 9, 855_770)]:
        # He et al.'s CIFAR nets with projection (1x1 conv + BN) shortcuts at the two stage changes
        ref = resnet_keys([n] * 3, 10, widths=(16, 32, 64), stem_kernel=3)
        assert n_params(ref) == count
        model = fn()
        assert [(k, v.shape) for k, v in model.state_dict().items()] == ref
        assert sum(p.data.size for p in model.parameters()) == count
        assert sum(isinstance(m, models.BasicBlock) for m in model.modules()) == 3 * n
    assert models.resnet20(num_classes=7).fc.weight.shape == (7, 64)


def test_num_classes_and_attributes():
    m = models.resnet18(num_classes=10)
    assert m.fc.weight.shape == (10, 512) and isinstance(m.avgpool, gk.nn.AdaptiveAvgPool2d)
    assert m.avgpool.output_size == (1, 1) and isinstance(m.maxpool, gk.nn.MaxPool2d)
    assert isinstance(m.layer2[0].downsample[0], gk.nn.Conv2d) and m.layer1[0].downsample is None
    assert models.resnet20().maxpool is None


# -- initialisation as torchvision's ----------------------------------------------------------------
def test_resnet_init():
    gk.manual_seed(1)
    m = models.resnet34(num_classes=10)
    for name, mod in m.named_modules():
        if isinstance(mod, gk.nn.Conv2d):  # kaiming_normal_(fan_out, relu): std sqrt(2 / (out * kh * kw))
            w = mod.weight.data
            std = math.sqrt(2.0 / (w.shape[0] * w.shape[2] * w.shape[3]))
            assert abs(w.std() / std - 1) < (0.1 if w.size > 2000 else 0.3) and abs(w.mean()) < 0.1 * std, name
        elif isinstance(mod, gk.nn.BatchNorm2d):
            assert np.all(mod.weight.data == 1) and np.all(mod.bias.data == 0), name
    bound = 1 / math.sqrt(512)  # fc keeps PyTorch's Linear default, U(+-1/sqrt(fan_in))
    assert np.abs(m.fc.weight.data).max() <= bound and np.abs(m.fc.weight.data).max() > 0.9 * bound
    assert np.abs(m.fc.bias.data).max() <= bound


def test_vgg_init(zoo):
    m = zoo("vgg11_bn")
    for name, mod in m.named_modules():
        if isinstance(mod, gk.nn.Conv2d):
            w = mod.weight.data
            std = math.sqrt(2.0 / (w.shape[0] * 9))
            assert abs(w.std() / std - 1) < 0.1 and np.all(mod.bias.data == 0), name
        elif isinstance(mod, gk.nn.BatchNorm2d):
            assert np.all(mod.weight.data == 1) and np.all(mod.bias.data == 0), name
        elif isinstance(mod, gk.nn.Linear):
            w = mod.weight.data
            assert abs(w[:64].std() / 0.01 - 1) < 0.05 and abs(w[:64].mean()) < 1e-3, name
            assert np.all(mod.bias.data == 0), name


# -- a converted torchvision state dict drives the forward -------------------------------------------
def random_state_dict(keys, rng):
    """Random values with the given keys and shapes, scaled so activations stay O(1)."""
    sd = {}
    for key, shape in keys:
        if key.endswith("num_batches_tracked"):
            sd[key] = np.array(rng.integers(1, 10_000), dtype=np.int64)
        elif key.endswith(("running_var", ".weight")) and len(shape) == 1:  # BN scale, variance
            sd[key] = rng.uniform(0.5, 1.5, size=shape).astype(np.float32)
        else:  # biases and running means N(0, 0.1^2), weights N(0, 1 / fan_in)
            sd[key] = rng.standard_normal(shape, dtype=np.float32)
            sd[key] *= 0.1 if len(shape) == 1 else math.sqrt(1.0 / math.prod(shape[1:]))
    return sd


def ref_conv(x, w, b=None, stride=1, padding=0):
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    cols = np.stack([xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
                     for i in range(kh) for j in range(kw)], axis=2)  # (n, c, kh*kw, oh, ow)
    y = np.tensordot(cols, w.reshape(oc, c, kh * kw).astype(np.float64), axes=([1, 2], [1, 2])).transpose(0, 3, 1, 2)
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def ref_bn(sd, prefix, x, eps=1e-5):  # eval mode: running statistics
    g = lambda k: sd[f"{prefix}.{k}"].astype(np.float64).reshape(1, -1, 1, 1)  # noqa: E731
    return (x - g("running_mean")) / np.sqrt(g("running_var") + eps) * g("weight") + g("bias")


def ref_maxpool(x, k, stride, padding):
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=-np.inf)
    oh, ow = (x.shape[2] + 2 * padding - k) // stride + 1, (x.shape[3] + 2 * padding - k) // stride + 1
    return np.max([xp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] for i in range(k) for j in range(k)],
                  axis=0)


def ref_linear(x, w, b):  # row blocks: the VGG classifier's float64 weights never exist whole
    return np.concatenate([x @ w[i:i + 1024].astype(np.float64).T for i in range(0, len(w), 1024)], axis=1) + b


relu = lambda x: np.maximum(x, 0)  # noqa: E731


def ref_resnet(sd, x, layers, stem="imagenet"):
    x = x.astype(np.float64)
    if stem == "imagenet":
        x = ref_maxpool(relu(ref_bn(sd, "bn1", ref_conv(x, sd["conv1.weight"], stride=2, padding=3))), 3, 2, 1)
    else:
        x = relu(ref_bn(sd, "bn1", ref_conv(x, sd["conv1.weight"], padding=1)))
    for i, blocks in enumerate(layers):
        for b in range(blocks):
            p = f"layer{i + 1}.{b}"
            stride = 2 if i > 0 and b == 0 else 1
            out = relu(ref_bn(sd, f"{p}.bn1", ref_conv(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1)))
            out = ref_bn(sd, f"{p}.bn2", ref_conv(out, sd[f"{p}.conv2.weight"], padding=1))
            if f"{p}.downsample.0.weight" in sd:
                x = ref_bn(sd, f"{p}.downsample.1", ref_conv(x, sd[f"{p}.downsample.0.weight"], stride=stride))
            x = relu(out + x)
    return ref_linear(x.mean(axis=(2, 3)), sd["fc.weight"], sd["fc.bias"])


def ref_vgg(sd, x, cfg):
    x, i = x.astype(np.float64), 0
    for v in cfg:
        if v == "M":
            x, i = ref_maxpool(x, 2, 2, 0), i + 1
        else:
            x = relu(ref_bn(sd, f"features.{i + 1}", ref_conv(x, sd[f"features.{i}.weight"],
                                                            sd[f"features.{i}.bias"], padding=1)))
            i += 3
    assert x.shape[2:] == (1, 1)  # a 32x32 input: the adaptive pool copies the 1x1 map to 7x7
    x = np.broadcast_to(x, x.shape[:2] + (7, 7)).reshape(len(x), -1)
    for j in (0, 3):
        x = relu(ref_linear(x, sd[f"classifier.{j}.weight"], sd[f"classifier.{j}.bias"]))
    return ref_linear(x, sd["classifier.6.weight"], sd["classifier.6.bias"])


def check_loaded(model, sd):
    got = model.state_dict()
    for key, value in sd.items():
        assert got[key].dtype == (np.int64 if key.endswith("num_batches_tracked") else np.float32)
        np.testing.assert_array_equal(got[key], value, err_msg=key)


def assert_rel_close(y, want, tol, what):
    err = float(np.max(np.abs(y - want)) / np.max(np.abs(want)))
    assert err <= tol, f"{what}: max difference {err:.3g} of the largest output > {tol}"


@pytest.mark.parametrize("name, shape", [("resnet18", (2, 3, 48, 40)), ("resnet34", (1, 3, 33, 35))])
def test_converted_resnet_state_dict_drives_forward(rng, name, shape):
    keys = reference_keys(name, num_classes=12)
    sd = random_state_dict(keys, rng)
    model = getattr(models, name)(num_classes=12)
    model.load_state_dict(sd)
    check_loaded(model, sd)
    x = rng.standard_normal(shape).astype(np.float32)
    with gk.no_grad():
        y = model.eval()(x)
    assert y.shape == (shape[0], 12) and y.dtype == np.float32
    assert_rel_close(y, ref_resnet(sd, x, RESNET_LAYERS[name]), 2e-5, name)


def test_converted_cifar_resnet_state_dict_drives_forward(rng):
    sd = random_state_dict(resnet_keys([3, 3, 3], 10, widths=(16, 32, 64), stem_kernel=3), rng)
    model = models.resnet20()
    model.load_state_dict(sd)
    x = rng.standard_normal((3, 3, 32, 32)).astype(np.float32)
    y = model.eval()(x)
    assert_rel_close(y, ref_resnet(sd, x, [3, 3, 3], stem="cifar"), 2e-5, "resnet20")


def test_converted_vgg_state_dict_drives_forward(zoo, rng):
    sd = random_state_dict(vgg_keys(VGG_CFGS["vgg11_bn"]), rng)
    model = zoo("vgg11_bn")
    model.load_state_dict(sd)
    check_loaded(model, sd)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    with gk.no_grad():
        y = model.eval()(x)
    model.train()
    assert y.shape == (2, 1000)
    assert_rel_close(y, ref_vgg(sd, x, VGG_CFGS["vgg11_bn"]), 2e-5, "vgg11_bn")


def test_state_dict_without_num_batches_tracked(rng):
    """Checkpoints saved before PyTorch 0.4.1 (some of torchvision's original downloads) lack
    num_batches_tracked: strict loading names them, strict=False loads the rest."""
    keys = [(k, s) for k, s in reference_keys("resnet18", 5) if not k.endswith("num_batches_tracked")]
    sd = random_state_dict(keys, rng)
    model = models.resnet18(num_classes=5)
    with pytest.raises(RuntimeError, match=r"missing keys \['bn1.num_batches_tracked', 'layer1.0.bn1.num_batches"):
        model.load_state_dict(sd)
    model.load_state_dict(sd, strict=False)
    check_loaded(model, sd)
    assert model.bn1.num_batches_tracked == 0


def test_forward_shapes(rng):
    m = models.resnet18()
    for shape in [(1, 3, 64, 64), (1, 3, 224, 224)]:
        with gk.no_grad():
            assert m(rng.standard_normal(shape).astype(np.float32)).shape == (1, 1000)
    assert models.resnet20()(rng.standard_normal((2, 3, 32, 32)).astype(np.float32)).shape == (2, 10)
    y = models.resnet56(num_classes=4).eval()(rng.standard_normal((1, 3, 32, 32)).astype(np.float32))
    assert y.shape == (1, 4) and np.all(np.isfinite(y))


def test_vgg_forward_shape(zoo, rng):
    with gk.no_grad():
        y = zoo("vgg11_bn").eval()(rng.standard_normal((1, 3, 32, 32)).astype(np.float32))
    assert y.shape == (1, 1000) and np.all(np.isfinite(y))


def test_mlp():
    gk.manual_seed(0)
    m = models.mlp(12, [7, 5], 3, dropout=0.25)
    types = [type(layer).__name__ for layer in m]
    assert types == ["Flatten", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert [tuple(p.shape) for p in m.parameters()] == [(7, 12), (7,), (5, 7), (5,), (3, 5), (3,)]
    assert m[3].p == 0.25
    assert [type(layer).__name__ for layer in models.mlp(4, [], 2)] == ["Flatten", "Linear"]
    assert len(models.mlp(4, (8,), 2)) == 4  # no Dropout at 0.0
    x = np.random.default_rng(0).standard_normal((4, 3, 2, 2))
    m.double().eval()
    w = [p.data for p in m.parameters()]
    h = np.maximum(x.reshape(4, -1) @ w[0].T + w[1], 0)
    h = np.maximum(h @ w[2].T + w[3], 0)
    np.testing.assert_allclose(m(x), h @ w[4].T + w[5], rtol=1e-12, atol=1e-12)
    assert gk.gradcheck(m.train(), x)
    with pytest.raises(ValueError, match=r"mlp: dropout: expected a value in \[0, 1\), got 1.5"):
        models.mlp(4, [3], 2, dropout=1.5)
    with pytest.raises(TypeError, match="mlp: hidden: expected a sequence of widths"):
        models.mlp(4, 3, 2)


def test_resnet_rejects_bad_config():
    with pytest.raises(ValueError, match="ResNet: layers: expected one positive block count per entry of widths"):
        models.ResNet([2, 2], widths=(8, 16, 32))
    with pytest.raises(ValueError, match="ResNet: stem: expected 'imagenet' or 'cifar', got 'tiny'"):
        models.ResNet([1], widths=(8,), stem="tiny")


# -- gradients: the derived backward of the zoo against float64 central differences ---------------------
@pytest.mark.parametrize("stem, layers, widths, shape", [
    ("cifar", [1, 2], (2, 3), (2, 3, 5, 5)),        # a projection shortcut, then an identity block
    ("imagenet", [1, 1], (2, 4), (2, 3, 11, 9)),    # 7x7/2 stem and its max pooling
])
def test_tiny_resnet_gradcheck(rng, stem, layers, widths, shape):
    """Every parameter and input element of a tiny ResNet (batch-norm in training mode)."""
    gk.manual_seed(3)
    model = models.ResNet(layers, num_classes=3, widths=widths, stem=stem)
    assert gk.gradcheck(model, rng.standard_normal(shape))


def sampled_gradient_check(model, x, names, rng, per_tensor=2, eps=1e-7):
    """Backward of L = sum(w * model(x)) against central differences on a few elements of the named
    parameters and of x, in float64 (training mode). A small step: a deep ReLU net has kinks near many
    points (at eps = 1e-6 a conv1 weight of resnet20 crosses enough of them to move the difference by 6e-4)."""
    model.double().train()
    params = dict(model.named_parameters())
    y = model(x)
    w = rng.standard_normal(y.shape)
    model.zero_grad()
    dx = model.backward(w)
    loss = lambda: float(np.sum(w * model(x)))  # noqa: E731
    targets = [(name, params[name].data, params[name].grad.copy()) for name in names] + [("input", x, dx)]
    for name, array, grad in targets:
        for flat in rng.choice(array.size, size=per_tensor, replace=False):
            idx = np.unravel_index(flat, array.shape)
            old = array[idx]
            array[idx] = old + eps
            up = loss()
            array[idx] = old - eps
            down = loss()
            array[idx] = old
            numeric = (up - down) / (2 * eps)
            assert abs(grad[idx] - numeric) <= 1e-6 + 1e-4 * abs(numeric), \
                f"{name}{idx}: backward {grad[idx]!r}, central difference {numeric!r}"


def test_resnet20_gradients_sampled(rng):
    gk.manual_seed(4)
    model = models.resnet20()
    x = rng.standard_normal((2, 3, 32, 32))
    sampled_gradient_check(model, x, ["conv1.weight", "layer1.0.bn1.weight", "layer2.0.downsample.0.weight",
                                      "layer2.0.downsample.1.bias", "layer3.2.conv2.weight", "fc.weight"], rng)


def test_resnet18_gradients_sampled(rng):
    gk.manual_seed(5)
    model = models.resnet18(num_classes=10)
    x = rng.standard_normal((2, 3, 32, 32))
    sampled_gradient_check(model, x, ["conv1.weight", "layer3.0.downsample.0.weight", "layer4.1.bn2.weight",
                                      "fc.bias"], rng)


def test_vgg_backward_runs(zoo, rng):
    model = zoo("vgg11_bn").train()
    model.zero_grad()
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    y = model(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = model.backward(dy)
    assert dx.shape == x.shape and np.all(np.isfinite(dx)) and np.any(dx != 0)
    np.testing.assert_allclose(model.classifier[6].bias.grad, dy.sum(axis=0), rtol=1e-5, atol=1e-6)
    assert np.any(model.features[0].weight.grad != 0)
    model.zero_grad()


def test_trainer_step_equals_manual_step(rng):
    """One Trainer batch on resnet20 = forward, loss, derived backward and SGD step by hand."""
    gk.manual_seed(6)
    model = models.resnet20()
    twin, initial = copy.deepcopy(model), copy.deepcopy(model)
    x = rng.standard_normal((8, 3, 32, 32)).astype(np.float32)
    t = rng.integers(0, 10, size=8)
    opt = gk.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    history = gk.Trainer(model, gk.nn.CrossEntropyLoss(), opt).fit(x, t, epochs=1, batch_size=8, shuffle=False,
                                                                  verbose=0)
    loss = gk.nn.CrossEntropyLoss()
    twin_opt = gk.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    twin.train()
    value = loss(twin(x), t)
    twin.zero_grad()
    twin.backward(loss.backward())
    twin_opt.step()
    assert history.history["loss"][0] == pytest.approx(value, rel=1e-6)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-6, atol=1e-7, err_msg=name)
    assert not np.array_equal(model.conv1.weight.data, initial.conv1.weight.data)  # the step did something


@pytest.mark.skipif(not hasattr(gk.nn.Module, "requires_grad_"), reason="freezing (Module.requires_grad_) not here")
def test_frozen_backbone_stays_bit_identical(rng):
    gk.manual_seed(7)
    model = models.resnet20()
    model.requires_grad_(False)
    model.fc = gk.nn.Linear(64, 4)
    before = {k: v for k, v in model.state_dict().items() if k.endswith(".weight") or k.endswith(".bias")}
    x = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
    t = rng.integers(0, 4, size=16)
    opt = gk.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    gk.Trainer(model, gk.nn.CrossEntropyLoss(), opt).fit(x, t, epochs=2, batch_size=8, verbose=0)
    after = model.state_dict()
    for key, value in before.items():
        if key.startswith("fc."):
            assert not np.array_equal(after[key], value), key
        else:
            np.testing.assert_array_equal(after[key], value, err_msg=key)


# -- the two examples run (small arguments) ------------------------------------------------------------
def load_example(name):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cifar10_example_runs_on_batches_in_the_published_format(tmp_path, rng, capsys):
    import pickle

    data = tmp_path / "data" / "cifar-10-batches-py"
    data.mkdir(parents=True)
    for name, n in [(f"data_batch_{i}", 12) for i in range(1, 6)] + [("test_batch", 10)]:
        batch = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, size=n)]}
        (data / name).write_bytes(pickle.dumps(batch, protocol=4))
    out = load_example("cifar10_resnet").main(
        ["--epochs", "2", "--batch-size", "16", "--val", "10", "--data", str(tmp_path / "data"),
         "--out", str(tmp_path / "out"), "--verbose", "0"])
    history = out["history"].history
    assert len(history["loss"]) == 2 and len(history["val_accuracy"]) == 2 and 0 <= out["test_accuracy"] <= 1
    assert history["lr"] == [0.1, 0.05]  # cosine over 2 epochs
    saved = gk.load(str(tmp_path / "out" / "resnet20.npz"))
    model = models.resnet20()
    model.load_state_dict(saved)
    np.testing.assert_array_equal(model.fc.weight.data, out["model"].fc.weight.data)
    assert "on 50 CIFAR-10 images" in capsys.readouterr().out  # 60 - 10 held out


@pytest.mark.dataset
def test_transfer_learning_example_runs(capsys):
    try:
        gk.datasets.load_fashion_mnist(download=False)
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    results = load_example("transfer_learning").main(
        ["--pretrain-images", "256", "--pretrain-epochs", "1", "--labelled", "64", "--epochs", "1", "--width", "4"])
    assert set(results) == {"frozen backbone, new fc", "then whole net fine-tuned", "from scratch"}
    assert all(0 <= v <= 1 for v in results.values())
    assert "backbone weights unchanged" in capsys.readouterr().out

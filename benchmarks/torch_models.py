"""The benchmarked flowclass architectures written in PyTorch (eager), for a side-by-side timing.

Each model is a faithful port: the same layers in the same order, the same masks, the same
conditioners, the same parameter counts (``run.py`` prints both), the same losses and optimiser
(Adam, with global-norm clipping at 10 for the MNIST models, as in the ``experiments/mnist`` configs).
Images are NCHW here (PyTorch's native layout) and NHWC in flowclass; squeezes and flattening
reproduce flowclass's element order, so the masks select the same entries.

Affine coupling with mask ``m`` and zero-initialised projection (as ``flowclass.AffineCoupling``):

    (ŝ, t) = proj(NN(m ⊙ x)),  s = (1 − m) ⊙ a ⊙ tanh(ŝ),  y = x ⊙ exp(s) + (1 − m) ⊙ t,  log|det| = Σ s
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MOONS_MEANS = ((-4.0, 0.0), (4.0, 0.0))
LayerOut = tuple[torch.Tensor, torch.Tensor]


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    """``elu([x, −x])`` on the channel axis."""
    return F.elu(torch.cat([x, -x], dim=1))


def sum_event(x: torch.Tensor) -> torch.Tensor:
    """Sum over every axis but the batch axis."""
    return x.flatten(1).sum(1)


class MLP(nn.Sequential):
    """``h_{l+1} = relu(W_l h_l + b_l)``; no output layer."""

    def __init__(self, in_features: int, hidden: tuple[int, ...]):
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        super().__init__(*layers)


class ConvNet(nn.Sequential):
    """3×3 'same' convolutions with ReLU; no output layer."""

    def __init__(self, in_channels: int, features: tuple[int, ...]):
        layers: list[nn.Module] = []
        for width in features:
            layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU()]
            in_channels = width
        super().__init__(*layers)


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channel axis of NCHW (flowclass normalises the last axis of NHWC)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        mean = h.mean(1, keepdim=True)
        var = h.var(1, keepdim=True, unbiased=False)
        return (h - mean) * torch.rsqrt(var + self.eps) * self.weight[:, None, None] + self.bias[:, None, None]


class GatedConvBlock(nn.Module):
    """``LN(h + a ⊙ sigmoid(g))``, ``[a, g] = conv1x1(concat_elu(conv3x3(concat_elu(h))))``."""

    def __init__(self, features: int):
        super().__init__()
        self.conv = nn.Conv2d(2 * features, features, 3, padding=1)
        self.gate = nn.Conv2d(2 * features, 2 * features, 1)
        self.norm = ChannelLayerNorm(features)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        value, gate = self.gate(concat_elu(self.conv(concat_elu(h)))).chunk(2, dim=1)
        return self.norm(h + value * torch.sigmoid(gate))


class GatedConvNet(nn.Module):
    """conv3x3 to ``features``, ``num_blocks`` gated blocks, ``concat_elu`` (2·features out)."""

    def __init__(self, in_channels: int, features: int, num_blocks: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, features, 3, padding=1)
        self.blocks = nn.Sequential(*[GatedConvBlock(features) for _ in range(num_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return concat_elu(self.blocks(self.stem(x)))


class AffineCoupling(nn.Module):
    """Mask-based RealNVP coupling on ``(B, D)`` (``image=False``) or ``(B, C, H, W)`` inputs."""

    def __init__(self, conditioner: nn.Module, hidden: int, mask: np.ndarray, image: bool):
        super().__init__()
        channels = mask.shape[0]
        self.conditioner = conditioner
        self.proj = nn.Conv2d(hidden, 2 * channels, 1) if image else nn.Linear(hidden, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.log_scale_bound = nn.Parameter(torch.ones(channels))
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.float32))
        self.image = image

    def forward(self, x: torch.Tensor) -> LayerOut:
        raw_log_scale, shift = self.proj(self.conditioner(x * self.mask)).chunk(2, dim=1)
        bound = self.log_scale_bound[:, None, None] if self.image else self.log_scale_bound
        log_scale = (1.0 - self.mask) * bound * torch.tanh(raw_log_scale)
        return x * torch.exp(log_scale) + (1.0 - self.mask) * shift, sum_event(log_scale)


class LogitTransform(nn.Module):
    """``y = logit(α + (1 − 2α) x)``, ``log|det| = Σ log(1 − 2α) − log p − log(1 − p)``."""

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> LayerOut:
        scale = 1.0 - 2.0 * self.alpha
        p = self.alpha + scale * x
        log_det = sum_event(math.log(scale) - torch.log(p) - torch.log1p(-p))
        return torch.log(p) - torch.log1p(-p), log_det


class Squeeze(nn.Module):
    """Space-to-depth ``(B, C, H, W) → (B, 4C, H/2, W/2)``; new channel ``(2·dh + dw)·C + c``, as in flowclass."""

    def forward(self, x: torch.Tensor) -> LayerOut:
        b, c, h, w = x.shape
        y = x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(b, 4 * c, h // 2, w // 2)
        return y, x.new_zeros(b)


class ToVector(nn.Module):
    """``(B, C, H, W) → (B, H·W·C)`` in NHWC order (flowclass's ``Reshape``); log|det| = 0."""

    def forward(self, x: torch.Tensor) -> LayerOut:
        return x.permute(0, 2, 3, 1).flatten(1), x.new_zeros(x.shape[0])


class ActNorm(nn.Module):
    """``y = (x + b) ⊙ exp(s)`` per channel, initialised from the first batch; ``log|det| = HW Σ s``."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))
        self._seen_initialized = False  # a Python copy of the flag: reading the buffer on a GPU syncs every step

    def forward(self, x: torch.Tensor) -> LayerOut:
        if not self._seen_initialized:
            if not self.initialized:
                with torch.no_grad():
                    self.bias.copy_(-x.mean((0, 2, 3)))
                    self.log_scale.copy_(-torch.log(x.std((0, 2, 3), unbiased=False) + 1e-6))
                    self.initialized.fill_(True)
            self._seen_initialized = True
        log_det = x.shape[2] * x.shape[3] * self.log_scale.sum() * x.new_ones(x.shape[0])
        return (x + self.bias[:, None, None]) * torch.exp(self.log_scale)[:, None, None], log_det


class InvertibleConv1x1(nn.Module):
    """Glow's LU-parametrised 1×1 conv ``W = P L (U + diag(sign ⊙ exp(log|s|)))``; ``log|det| = HW Σ log|s|``."""

    def __init__(self, channels: int):
        super().__init__()
        rotation, _ = torch.linalg.qr(torch.randn(channels, channels))
        p, lower, upper = torch.linalg.lu(rotation)
        self.register_buffer("permutation", p)
        self.register_buffer("sign", torch.sign(torch.diagonal(upper)))
        self.lower = nn.Parameter(torch.tril(lower, -1))
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_abs_s = nn.Parameter(torch.log(torch.abs(torch.diagonal(upper))))
        self.register_buffer("eye", torch.eye(channels))

    def forward(self, x: torch.Tensor) -> LayerOut:
        lower = torch.tril(self.lower, -1) + self.eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign * torch.exp(self.log_abs_s))
        weight = self.permutation @ lower @ upper
        log_det = x.shape[2] * x.shape[3] * self.log_abs_s.sum() * x.new_ones(x.shape[0])
        return F.conv2d(x, weight[:, :, None, None]), log_det


class Chain(nn.Module):
    """Layers applied in the order written; log-dets summed."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> LayerOut:
        total = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, log_det = layer(x)
            total = total + log_det
        return x, total


class FactorOut(nn.Module):
    """``y = [g(x_1), x_2]`` over the channel halves."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> LayerOut:
        kept, factored = x.chunk(2, dim=1)
        y, log_det = self.inner(kept)
        return torch.cat([y, factored], dim=1), log_det


class FlowClassifier(nn.Module):
    """``log p(x | k) = log N(f(x); μ_k, I) + log|det J_f|``; calling it gives the logits
    ``log N(f(x); μ_k, I) + log π_k`` (uniform ``π``)."""

    def __init__(self, flow: nn.Module, means: torch.Tensor, image: bool):
        super().__init__()
        self.flow = flow
        self.register_buffer("means", means)
        self.image = image

    def _latent(self, x: torch.Tensor) -> LayerOut:
        z, log_det = self.flow(x)
        if self.image and z.dim() == 4:
            z = z.permute(0, 2, 3, 1)  # flatten in NHWC order, like flowclass
        return z.flatten(1), log_det

    def _log_prob(self, z: torch.Tensor) -> torch.Tensor:
        dim = z.shape[1]
        return -0.5 * ((z[:, None, :] - self.means) ** 2).sum(-1) - 0.5 * dim * math.log(2 * math.pi)

    def class_log_likelihoods(self, x: torch.Tensor) -> torch.Tensor:
        z, log_det = self._latent(x)
        return self._log_prob(z) + log_det[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, _ = self._latent(x)
        return self._log_prob(z) - math.log(self.means.shape[0])


def flow_loss(beta: float, bits_per_dim: bool) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``NLL / u + β · CE(posterior)``, as ``flowclass.make_flow_loss`` (``u = D log 2`` for bits/dim, else 1)."""

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        per_class = model.class_log_likelihoods(x)
        nll = -per_class.gather(1, y[:, None]).mean()
        objective = nll / (math.prod(x.shape[1:]) * math.log(2.0)) if bits_per_dim else nll
        if not beta:
            return objective
        log_weights = -math.log(per_class.shape[1])
        return objective + beta * F.cross_entropy(per_class + log_weights, y)

    return loss


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy of a network that returns logits."""
    return F.cross_entropy(model(x), y)


def tabular_realnvp(num_couplings: int = 5, hidden: tuple[int, ...] = (100, 100)) -> FlowClassifier:
    """The moons flow: alternating-mask couplings with MLP conditioners ``2 → hidden → 4``."""
    couplings = [
        AffineCoupling(MLP(2, hidden), hidden[-1], ((np.arange(2) + p % 2 + 1) % 2).astype(np.float32), image=False)
        for p in range(num_couplings)
    ]
    return FlowClassifier(Chain(couplings), torch.tensor(MOONS_MEANS), image=False)


def _image_mask(kind: str, channels: int, height: int, width: int, parity: int) -> np.ndarray:
    """flowclass's checkerboard / channel mask, as ``(C, H, W)``."""
    if kind == "checkerboard":
        h, w = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        board = ((h + w + parity + 1) % 2).astype(np.float32)
        return np.repeat(board[None], channels, axis=0)
    first = (np.arange(channels) < channels // 2).astype(np.float32)
    per_channel = first if parity % 2 == 0 else 1.0 - first
    return np.broadcast_to(per_channel[:, None, None], (channels, height, width)).copy()


def _class_means(num_classes: int, dim: int) -> torch.Tensor:
    return torch.randn(num_classes, dim)


def multiscale_image_flow() -> FlowClassifier:
    """``image_realnvp('multiscale')`` for 28×28×1: logit, 2 checkerboard (32), squeeze, 2 channel (48), squeeze,
    factor-out of 8 of 16 channels with 4 channel couplings (64); gated conv conditioners, 3 blocks."""

    def coupling(channels, size, features, kind, parity):
        return AffineCoupling(GatedConvNet(channels, features), 2 * features,
                              _image_mask(kind, channels, size, size, parity), image=True)

    layers = [
        LogitTransform(),
        coupling(1, 28, 32, "checkerboard", 0),
        coupling(1, 28, 32, "checkerboard", 1),
        Squeeze(),
        coupling(4, 14, 48, "channel", 0),
        coupling(4, 14, 48, "channel", 1),
        Squeeze(),
        FactorOut(Chain([coupling(8, 7, 64, "channel", p % 2) for p in range(4)])),
    ]
    return FlowClassifier(Chain(layers), _class_means(10, 784), image=True)


def fast_image_flow() -> FlowClassifier:
    """``image_realnvp('fast')`` for 28×28×1: logit, squeeze, 2 × [ActNorm, 1×1 conv, channel coupling (64, 64)],
    squeeze, 3 × [the same with 96], flatten, 2 alternating dense couplings (512)."""

    def step(channels, size, features, parity):
        return [ActNorm(channels), InvertibleConv1x1(channels),
                AffineCoupling(ConvNet(channels, (features, features)), features,
                               _image_mask("channel", channels, size, size, parity), image=True)]

    layers: list[nn.Module] = [LogitTransform(), Squeeze()]
    layers += [layer for p in range(2) for layer in step(4, 14, 64, p)]
    layers += [Squeeze()]
    layers += [layer for p in range(3) for layer in step(16, 7, 96, p)]
    layers += [ToVector()]
    layers += [AffineCoupling(MLP(784, (512,)), 512, ((np.arange(784) + p + 1) % 2).astype(np.float32), image=False)
               for p in range(2)]
    return FlowClassifier(Chain(layers), _class_means(10, 784), image=True)


class FNN(nn.Sequential):
    """The slides' ``2 → 100 → 100 → 2`` ReLU classifier."""

    def __init__(self):
        super().__init__(nn.Linear(2, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 2))


class CNN(nn.Sequential):
    """The slides' MNIST CNN: conv 1→10 7×7, conv 10→10 5×5 (valid), 3240 → 50 → 10, ReLU between."""

    def __init__(self):
        super().__init__(nn.Conv2d(1, 10, 7), nn.ReLU(), nn.Conv2d(10, 10, 5), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3240, 50), nn.ReLU(), nn.Linear(50, 10))


MNIST_FLOW_LOSS = flow_loss(beta=3.0, bits_per_dim=True)  # experiments/mnist configs: beta 3, bits/dim


def build(name: str, num_couplings: int = 5) -> tuple[nn.Module, Callable, float | None]:
    """``(model, loss_fn, clip_norm)`` for a benchmark model name (see ``run.py``'s ``MODELS``)."""
    if name == "moons_flow":
        return tabular_realnvp(num_couplings), flow_loss(0.0, bits_per_dim=False), None
    if name == "fnn":
        return FNN(), cross_entropy, None
    if name == "mnist_multiscale_flow":
        return multiscale_image_flow(), MNIST_FLOW_LOSS, 10.0
    if name == "mnist_fast_flow":
        return fast_image_flow(), MNIST_FLOW_LOSS, 10.0
    if name == "cnn":
        return CNN(), cross_entropy, 10.0
    raise ValueError(f"unknown model {name!r}.")


def median_time(
    fn: Callable[[], object], warmup: int, min_repeats: int, min_seconds: float,
    sync: Callable[[], object] | None = None,
) -> tuple[float, float, int]:
    """``(median, min, count)`` of the wall times of ``fn()`` after ``warmup`` calls;
    at least ``min_repeats`` calls and ``min_seconds`` of timed calls. ``sync`` (e.g.
    ``torch.cuda.synchronize``) is called after each ``fn()``, before the clock is read."""

    def call() -> None:
        fn()
        if sync is not None:
            sync()

    for _ in range(warmup):
        call()
    times: list[float] = []
    while len(times) < min_repeats or sum(times) < min_seconds:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), min(times), len(times)


def use_device(spec: dict) -> torch.device:
    """``cuda`` for ``spec['device'] == 'gpu'`` (TF32 allowed in matmuls and cuDNN convolutions as JAX's GPU
    default, unless ``spec['gpu_precision'] == 'float32'``; cuDNN autotuning on, as XLA autotunes), else ``cpu``.

    Raises:
      RuntimeError: a GPU was asked for and PyTorch sees no CUDA device.
    """
    if spec.get("device", "cpu") != "gpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"--device gpu, but torch {torch.__version__} sees no CUDA device "
                           f"(torch.version.cuda={torch.version.cuda}).")
    tf32 = spec.get("gpu_precision", "tf32") == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    return torch.device("cuda")


def measure(spec: dict, x: np.ndarray, y: np.ndarray) -> dict:
    """Train-step and logits throughput of the PyTorch twin on ``x`` (NHWC images or ``(B, D)``), ``y``.

    A train step is ``zero_grad``, loss, ``backward``, optional global-norm clipping, ``Adam.step``.
    """
    torch.set_num_threads(spec["threads"])
    device = use_device(spec)
    torch.manual_seed(0)
    model, loss_fn, clip = build(spec["model"], spec.get("num_couplings", 5))
    model = model.to(device)
    xt = torch.as_tensor(x)
    if xt.dim() == 4:
        xt = xt.permute(0, 3, 1, 2).contiguous()
    yt = torch.as_tensor(y, dtype=torch.long)
    xt, yt = xt.to(device), yt.to(device)
    with torch.no_grad():
        model(xt)  # data-dependent init (ActNorm), as flowclass's create_train_state
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, xt, yt)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()

    def infer() -> None:
        with torch.inference_mode():
            model(xt)

    batch = len(x)
    timing = dict(warmup=spec["warmup"], min_repeats=spec["repeats"], min_seconds=spec["min_seconds"],
                  sync=torch.cuda.synchronize if device.type == "cuda" else None)
    train_s, train_best_s, train_n = median_time(train_step, **timing)
    result = {"framework": "torch", "params": params, "train_step_s": train_s, "train_best_step_s": train_best_s,
              "train_repeats": train_n, "train_best_ex_s": len(x) / train_best_s,
              "train_ex_s": batch / train_s}
    if spec.get("infer", True):
        infer_s, _, _ = median_time(infer, **timing)
        result.update(infer_s=infer_s, infer_ex_s=batch / infer_s)
    if device.type == "cuda":
        result.update(device_kind=torch.cuda.get_device_name(),
                      device_peak_mib=torch.cuda.max_memory_allocated() / 2**20)
    return result


def load_flax_variables(model: FlowClassifier, variables: dict, means: np.ndarray) -> None:
    """Copies a flowclass flow's variables (``params`` and ``constants``) and class means into its PyTorch twin,
    so that both compute the same function (the equivalence check in ``test_smoke.py``)."""

    def tensor(a) -> torch.Tensor:
        return torch.from_numpy(np.array(a, dtype=np.float32))

    def dense(target: nn.Module, p: dict) -> None:
        kernel = tensor(p["kernel"])  # Dense (in, out) or Conv (kh, kw, in, out)
        weight = kernel.T if kernel.dim() == 2 else kernel.permute(3, 2, 0, 1)
        target.weight.copy_(weight.reshape(target.weight.shape))
        target.bias.copy_(tensor(p["bias"]))

    def numbered(module: nn.Module, kind: type) -> list[nn.Module]:
        return [m for m in module.modules() if type(m) is kind]

    def layer(target: nn.Module, p: dict, c: dict) -> None:
        if isinstance(target, Chain):
            for i, sub in enumerate(target.layers):
                layer(sub, p.get(f"layers_{i}", {}), c.get(f"layers_{i}", {}))
        elif isinstance(target, FactorOut):
            layer(target.inner, p["inner"], c.get("inner", {}))
        elif isinstance(target, AffineCoupling):
            cond, params = target.conditioner, p["conditioner"]
            dense(target.proj, p["zero_proj"])
            target.log_scale_bound.copy_(tensor(p["log_scale_bound"]))
            if isinstance(cond, GatedConvNet):
                dense(cond.stem, params["Conv_0"])
                for j, block in enumerate(cond.blocks):
                    q = params[f"GatedConvBlock_{j}"]
                    dense(block.conv, q["Conv_0"])
                    dense(block.gate, q["Conv_1"])
                    block.norm.weight.copy_(tensor(q["LayerNorm_0"]["scale"]))
                    block.norm.bias.copy_(tensor(q["LayerNorm_0"]["bias"]))
            else:
                kind, prefix = (nn.Linear, "Dense") if isinstance(cond, MLP) else (nn.Conv2d, "Conv")
                for j, sub in enumerate(numbered(cond, kind)):
                    dense(sub, params[f"{prefix}_{j}"])
        elif isinstance(target, ActNorm):
            target.bias.copy_(tensor(p["bias"]))
            target.log_scale.copy_(tensor(p["log_scale"]))
            target.initialized.fill_(True)
        elif isinstance(target, InvertibleConv1x1):
            for name in ("lower", "upper", "log_abs_s"):
                getattr(target, name).copy_(tensor(p[name]))
            target.permutation.copy_(tensor(c["permutation"]))
            target.sign.copy_(tensor(c["sign"]))

    with torch.no_grad():
        layer(model.flow, variables["params"]["flow"], variables.get("constants", {}).get("flow", {}))
        model.means.copy_(tensor(means))

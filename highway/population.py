"""Many trials of one architecture trained at once: a random search as one model.

    nets = [highway_mlp(784, 50, 20, 10, activation="relu", gate_bias=b) for b in biases]
    population = stack_population(nets)                 # parameters (P, ...)
    opt = PopulationSGD(population.parameters(), lr=lrs, momentum=moms)   # per-trial lr and momentum
    logits = population(x)                              # x (B, ...) shared, or (P, B, F): logits (P, B, C)
    winners = population.unstack()                      # P ordinary nets with the current weights

A trial alone at the paper's width (50) cannot fill a GPU, or even a CPU: its step is bound by launches and
Python. Stacked, every layer of every trial is one batched matrix product (`baddbmm`) on the torch backend,
or one launch of the fused kernels with a trial axis on triton (`highway_linear_population`), and on a GPU
with backend "auto" every highway layer of every trial is one launch of the depth-fused stack, so P trials
cost about the launches of one. Trials stay independent: trial p's output, loss and gradients depend on trial
p's parameters and data only, so each ends where it would alone, up to the rounding of batched GEMMs.
"""
import torch
from torch import nn

from highway.activations import ACTIVATIONS
from highway.functional import highway_linear_stack
from highway.models import DeepMLP
from highway.modules import HighwayLinear
from highway.stack import HighwayStack


def _layer_spec(layer) -> tuple:
    """What must agree between trials for a layer to be stacked: kind, shapes, activation."""
    if isinstance(layer, HighwayStack):
        return ("highway stack", tuple(layer.weight.shape), layer.activation)
    if isinstance(layer, HighwayLinear):
        return ("highway", tuple(layer.weight.shape), layer.activation)
    linear, act = layer[0], layer[1]
    return ("plain", tuple(linear.weight.shape), type(act).__name__)


def _architecture(net: DeepMLP) -> list:
    if not isinstance(net, DeepMLP):
        raise TypeError(f"stack_population takes nets built by highway_mlp or plain_mlp, got {type(net).__name__}")
    stem = net.stem[1]
    return [("stem", tuple(stem.weight.shape), type(net.stem[2]).__name__),
            *(_layer_spec(layer) for layer in net.layers), ("head", tuple(net.head.weight.shape))]


def _activation_name(module) -> str:
    names = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "GELU": "gelu", "Identity": "identity"}
    return names[type(module).__name__]


class Population(nn.Module):
    """P nets of one `DeepMLP` architecture with a leading trial axis on every parameter:
    `stem_weight (P, w, F)`, every hidden layer in `hidden_weight (P, depth − 1, 2w, w)` (highway, each
    layer's rows [W_H; W_T], as a `HighwayStack` holds them) or `(P, depth − 1, w, w)` (plain) and
    `hidden_bias`, and `head_weight (P, C, w)`. `forward` computes all trials at once."""

    def __init__(self, nets: list[DeepMLP]):
        super().__init__()
        first = nets[0]
        self.kind = first.kind
        self.trials = len(nets)
        self.activation = _activation_name(first.stem[2])
        self.in_features = first.stem[1].in_features
        self.width = first.stem[1].out_features
        self.num_classes = first.head.out_features
        # The highway layers' backend, as the nets had it, for the population's stack (`highway_linear_stack`):
        # "triton" runs each layer of every trial as one launch of the fused kernels (grid over the trials),
        # "torch" as batched GEMMs, "triton-stack" every layer of every trial in one launch, and "auto" the
        # latter on a GPU where the width fits (else the per-layer kernels; torch on a CPU).
        self.backend = first.layers[0].backend if self.kind == "highway" and len(first.layers) else "torch"
        self.stacked = len(first.layers) == 1 and isinstance(first.layers[0], HighwayStack)
        stack = lambda tensors: nn.Parameter(torch.stack([t.detach() for t in tensors]).clone())  # noqa: E731
        self.stem_weight = stack([n.stem[1].weight for n in nets])
        self.stem_bias = stack([n.stem[1].bias for n in nets])
        # Every hidden layer's weights in one (P, L, rows, w) parameter and biases in one (P, L, rows), the
        # layout of a HighwayStack: an optimizer step is then a few ops on six tensors at any depth (on a GPU,
        # a few launches instead of a few per layer), and the forward unbinds it, whose backward is one stack.
        if self.stacked:
            self.hidden_weight = stack([n.layers[0].weight for n in nets])
            self.hidden_bias = stack([n.layers[0].bias for n in nets])
        else:
            linears = [[layer if self.kind == "highway" else layer[0] for layer in n.layers] for n in nets]
            rows = 2 * self.width if self.kind == "highway" else self.width
            self.hidden_weight = stack([torch.stack([lin.weight for lin in net]) if net else
                                        first.stem[1].weight.new_empty(0, rows, self.width) for net in linears])
            self.hidden_bias = stack([torch.stack([lin.bias for lin in net]) if net else
                                      first.stem[1].bias.new_empty(0, rows) for net in linears])
        self.head_weight = stack([n.head.weight for n in nets])
        self.head_bias = stack([n.head.bias for n in nets])
        # The architecture to rebuild in `unstack`, kept out of the module's registry so that its parameters
        # are neither the population's nor moved with it.
        self.__dict__["_template"] = first

    @property
    def depth(self) -> int:
        return 1 + self.hidden_weight.shape[1]

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        """The first layer's pre-activations (P, B, w). An input shared by every trial, (B, ...), is one GEMM
        against all trials' stem weights side by side, (B, F) × (F, P·w): wider and cheaper than P thin ones."""
        if x.dim() == 3 and x.shape[0] == self.trials and x.shape[-1] == self.in_features:
            return torch.baddbmm(self.stem_bias.unsqueeze(1), x, self.stem_weight.transpose(1, 2))
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.in_features:
            raise ValueError(f"x must be (B, ...) with {self.in_features} features, or ({self.trials}, B, "
                             f"{self.in_features}); got shape {tuple(x.shape)}")
        z = torch.nn.functional.linear(flat, self.stem_weight.reshape(-1, self.in_features), self.stem_bias.reshape(-1))
        return z.view(flat.shape[0], self.trials, self.width).transpose(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.activation]
        h = act(self._stem(x))
        if self.kind == "highway":  # a population of stacks, whichever way the nets held their layers
            h = highway_linear_stack(h, self.hidden_weight, self.hidden_bias, self.activation, self.backend)
        else:
            for weight, bias in zip(self.hidden_weight.unbind(1), self.hidden_bias.unbind(1)):
                h = act(torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2)))
        return torch.baddbmm(self.head_bias.unsqueeze(1), h, self.head_weight.transpose(1, 2))

    @torch.no_grad()
    def unstack(self) -> list[DeepMLP]:
        """P ordinary nets like the inputs, holding the current weights (on the population's device)."""
        import copy

        nets = []
        for p in range(self.trials):
            net = copy.deepcopy(self._template).to(self.stem_weight.device)
            net.stem[1].weight.copy_(self.stem_weight[p])
            net.stem[1].bias.copy_(self.stem_bias[p])
            if self.stacked:
                net.layers[0].weight.copy_(self.hidden_weight[p])
                net.layers[0].bias.copy_(self.hidden_bias[p])
            else:
                for i, layer in enumerate(net.layers):
                    linear = layer if self.kind == "highway" else layer[0]
                    linear.weight.copy_(self.hidden_weight[p, i])
                    linear.bias.copy_(self.hidden_bias[p, i])
            net.head.weight.copy_(self.head_weight[p])
            net.head.bias.copy_(self.head_bias[p])
            nets.append(net)
        return nets


def stack_population(nets) -> Population:
    """One `Population` of `nets`: highway_mlp or plain_mlp nets of one architecture and one activation.
    ValueError naming the first difference; TypeError for other models (conv nets do not stack: their
    layers are not batched matrix products)."""
    nets = list(nets)
    if not nets:
        raise ValueError("stack_population needs at least one net")
    reference = _architecture(nets[0])
    for i, net in enumerate(nets[1:], start=1):
        arch = _architecture(net)
        if net.kind != nets[0].kind:
            raise ValueError(f"net {i} is a {net.kind} net, net 0 a {nets[0].kind} net")
        if len(arch) != len(reference):
            raise ValueError(f"net {i} has depth {net.depth}, net 0 depth {nets[0].depth}")
        for where, (a, b) in enumerate(zip(reference, arch)):
            if a != b:
                raise ValueError(f"net {i} differs from net 0 at layer {where}: {b} against {a}")
    for net in nets:
        if any(p.device != nets[0].stem[1].weight.device or p.dtype != nets[0].stem[1].weight.dtype
               for p in net.parameters()):
            raise ValueError("every net must have its parameters on one device and in one dtype")
    return Population(nets)


class PopulationSGD(torch.optim.Optimizer):
    """`torch.optim.SGD`'s update, with a learning rate and a momentum per trial, for parameters whose first
    axis is the trial axis. Each step updates every trial with one pass over the parameter tensors (two
    in-place ops a tensor, whatever P is; a `Population` has six tensors, whatever its depth).

    `lr` and `momentum` are sequences or `(P,)` tensors, or one number for every trial. `decay_lr_(gamma)`
    multiplies each trial's learning rate by its own factor, or all by one (the paper's per-epoch exponential
    decay). `freeze_(mask)`, a `(P,)` bool tensor, stops the trials in `mask` (diverged ones) for good: their
    learning rate becomes zero and their gradients are ignored, NaN or not, so their parameters stay as they
    were. Neither waits on the device: a training loop can freeze every step without a host sync (shapes and
    dtypes are checked always, values only when they are on the host)."""

    def __init__(self, params, lr, momentum=0.0, nesterov: bool = False, weight_decay: float = 0.0):
        params = list(params)
        if not params:
            raise ValueError("PopulationSGD got no parameters")
        trials = params[0].shape[0]
        device = params[0].device
        lr = torch.as_tensor(lr, dtype=torch.float32, device=device).reshape(-1)
        momentum = torch.as_tensor(momentum, dtype=torch.float32, device=device).reshape(-1)
        if lr.numel() == 1:
            lr = lr.expand(trials).clone()
        if momentum.numel() == 1:
            momentum = momentum.expand(trials).clone()
        for name, value in (("lr", lr), ("momentum", momentum)):
            if value.numel() != trials:
                raise ValueError(f"{name} must have one value per trial ({trials}), got {value.numel()}")
        if not (torch.isfinite(lr).all() and (lr >= 0).all()):
            raise ValueError(f"lr must be finite and >= 0 for every trial, got {lr.tolist()}")
        if not ((momentum >= 0) & (momentum < 1)).all():
            raise ValueError(f"momentum must be in [0, 1) for every trial, got {momentum.tolist()}")
        if nesterov and not (momentum > 0).all():
            raise ValueError("nesterov needs a positive momentum for every trial")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        for p in params:
            if p.shape[0] != trials:
                raise ValueError(f"every parameter needs the trial axis first ({trials}), got shape {tuple(p.shape)}")
        super().__init__(params, dict(nesterov=nesterov, weight_decay=weight_decay))
        self.trials = trials
        self.lr = lr
        self.momentum = momentum
        self.active = torch.ones(trials, dtype=torch.bool, device=device)
        self._all_active = True  # kept on the host, so that a step never waits on the device to ask

    def decay_lr_(self, gamma):
        gamma = torch.as_tensor(gamma, dtype=self.lr.dtype)
        if gamma.dim() > 1 or gamma.numel() not in (1, self.trials):
            raise ValueError(f"gamma must be one factor or one per trial ({self.trials}), "
                             f"got shape {tuple(gamma.shape)}")
        # values on the host are checked; a tensor on the GPU is not, since asking would make the host wait
        if gamma.device.type == "cpu" and not (torch.isfinite(gamma).all() and (gamma >= 0).all()):
            raise ValueError(f"gamma must be finite and >= 0, got {gamma.tolist()}")
        self.lr.mul_(gamma.to(self.lr.device))

    @torch.no_grad()
    def freeze_(self, mask: torch.Tensor):
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
        if mask.shape != (self.trials,):
            raise ValueError(f"mask must have one value per trial, shape ({self.trials},), got {tuple(mask.shape)}")
        mask = mask.to(self.active.device)
        if mask.device.type == "cpu" and not mask.any():  # asking is free on a CPU; a GPU would make us wait
            return
        self.active &= ~mask
        self.lr.mul_(self.active)
        self._all_active = False  # from now on each step masks the gradients (a frozen trial's may be NaN)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        all_active = self._all_active
        for group in self.param_groups:
            decay, nesterov = group["weight_decay"], group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                shape = (-1, *([1] * (p.dim() - 1)))  # a per-trial factor, broadcast over the trial's slice
                # frozen trials' gradients may be NaN: zero them, so that NaN·0 never reaches a live trial
                grad = p.grad if all_active else torch.where(self.active.view(shape), p.grad, 0)
                if decay:
                    grad = grad.add(p, alpha=decay)
                momentum = self.momentum.view(shape).to(p.dtype)
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:  # SGD's first step: the buffer is the gradient itself
                    buf = state["momentum_buffer"] = grad.clone()
                else:  # buf·momentum + grad, as SGD rounds it (mul_ then add_), in one pass over memory
                    torch.addcmul(grad, buf, momentum, out=buf)
                step = grad.add(buf * momentum) if nesterov else buf
                p.addcmul_(step, self.lr.view(shape).to(p.dtype), value=-1.0)
        return loss

r"""Variational autoencoders trained by optax inside the engine's scan, vmapped over chains.

This is the family where ``fit`` is gradient training: each generation trains a VAE on the regime's (weighted)
training set with Adam for a fixed number of steps, then the next generation's data are decoded from
:math:`z \sim N(0, I)`. Training and sampling are pure functions of (key, data, weights, params), so the engine
vmaps them over chains: 8–64 chains train at once on a CPU.

**Model.** Encoder :math:`q_\phi(z|x) = N(m_\phi(x), \mathrm{diag}\,s^2_\phi(x))`, prior :math:`N(0, I_L)`,
decoder :math:`p_\theta(x|z)`, and the loss per image is the β-weighted negative ELBO

.. math::

    \ell(x) = -\mathbb E_{q}\log p_\theta(x|z) + \beta\,\mathrm{KL}(q_\phi(z|x)\,\|\,N(0, I))

estimated with one reparametrised draw :math:`z = m + s\varepsilon` (for the linear-Gaussian VAE the expectation is
exact, see below). Likelihoods, stated:

* ``"bernoulli"``: :math:`-\log p = \sum_j \mathrm{softplus}(\eta_j) - x_j\eta_j` (binary cross-entropy with
  logits :math:`\eta`); for grey levels :math:`x_j\in[0,1]` this is the usual cross-entropy, *not* a normalised
  density (so its ELBO is a training loss, not a bound on a log density of grey images);
* ``"gaussian"``: :math:`N(x; \mu_\theta(z), \sigma^2 I)` with a fixed ``obs_sd`` σ or, when ``obs_sd=None``, a
  learned scalar :math:`\log\sigma` (a proper density: the ELBO is a lower bound on :math:`\log p_\theta(x)`).

Architectures: ``"mlp"`` (dense ReLU layers ``hidden``, mirrored in the decoder), ``"conv"`` (two stride-2 3×3
convolutions with 16 and 32 channels, a dense layer to the latent; the decoder mirrors it with nearest-neighbour ×2
upsampling; H and W must be multiples of 4) and ``"linear"`` (below).

**Training** (``fit``): a fresh network from the fit key (Shumailov et al. train each generation from scratch) or,
with ``warm_start=True``, the previous generation's network and Adam state (at t = 1, the chain's start:
:meth:`VAE.init` for a dataset). ``steps`` Adam steps (optax; ``schedule="cosine"`` decays the step size to 0
within each fit and restarts at every generation).
Frequency weights enter as the sampling law of the minibatches: each step draws ``batch_size`` row indices with
probability :math:`w_i/\sum w` **with replacement** (weight 0 = absent row: never drawn); with
``batch_size=None`` every step is the full weighted batch :math:`\sum_i w_i\ell(x_i)/\sum_i w_i` (deterministic for
the linear VAE).

**Sampling** (``sample``): :math:`z\sim N(0,I)`, then ``sample_mode="mean"`` (default) outputs the decoder mean
(grey images :math:`\mathrm{sigmoid}(\eta)`, as most VAE image pipelines do) and ``"sample"`` draws from the
likelihood (binary pixels, or :math:`\mu + \sigma\varepsilon`), which is the model's actual generative law.

**Linear-Gaussian VAE = probabilistic PCA** (``architecture="linear"``, Gaussian likelihood, learned σ):
encoder mean :math:`xV + c`, input-independent :math:`\log s^2`, decoder :math:`zW + b`. The expected
log-likelihood is computed in closed form,
:math:`\mathbb E_q\|x - zW - b\|^2 = \|x - mW - b\|^2 + \sum_l s_l^2\|W_l\|^2`, so training is deterministic. The
model's law is :math:`N(b, W^\top W + \sigma^2 I)`; at the ELBO's maximum it is the probabilistic-PCA maximum
likelihood fit (Tipping & Bishop 1999; Lucas et al. 2019 show the diagonal-encoder linear VAE attains it), which
for ``latent_dim = d`` is the Gaussian MLE :math:`N(\bar x, S)`, :math:`S` with ddof 0. With a learned σ and
without ``warm_start``, ``fit`` trains on the standardised rows :math:`(x - \bar x)/s + 1` (:math:`s` the pooled
sd; mean 1, not 0, see ``_standardiser``) and maps the optimum back (:math:`W \to sW`,
:math:`b \to \bar x + s(b - 1)`, :math:`\sigma \to s\sigma`, the encoder likewise): an exact
reparametrisation that lets the same steps reach the optimum at any data scale (from the unit-scale
initialisation alone, rows of scale 0.03 stopped 0.25 short in log det). A recursive chain of linear
VAEs (``sample_mode="sample"``) is then the Gaussian family's d-dim chain with ddof = 0, and
``collapse-theory check --family vae`` compares it with THEORY.md §2.2.

**Generation-0 anchor.** :class:`VAEParams` carries the first fit (t = 1, on real data): ``anchor`` is its network
once ``anchored == 1``; the latent metrics encode every generation's samples with that encoder (Shumailov et al.'s
"tails washed away" histogram).

References:
  Kingma & Welling, "Auto-Encoding Variational Bayes" (ICLR 2014); Shumailov et al., Nature 631 (2024), VAE
  experiments; Tipping & Bishop, "Probabilistic Principal Component Analysis" (JRSS-B 1999); Lucas et al.,
  "Don't Blame the ELBO!" (NeurIPS 2019).

Examples:
  >>> import jax
  >>> from collapse_theory.models import VAE
  >>> model = VAE(image_shape=(8, 8), latent_dim=2, hidden=(32,), steps=10)
  >>> params = model.init(jax.random.key(0))
  >>> model.sample(jax.random.key(1), params, 5).shape
  (5, 64)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._linalg import nuclear_norm
from ..theory._validate import is_real
from . import classifier as _clf
from . import gmm as _gmm
from . import nn

ARCHITECTURES = ("mlp", "conv", "linear")
LIKELIHOODS = ("bernoulli", "gaussian")
SAMPLE_MODES = ("mean", "sample")
SCHEDULES = ("constant", "cosine")
_LOG_2PI = math.log(2 * math.pi)
_CONV_CHANNELS = (16, 32)
CONFIDENCE = 0.9
"""Top-class probability at which a generated image counts as recognisably of a class (``share_{c}`` metrics)."""


class VAEParams(NamedTuple):
    """A chain's VAE: ``net`` (encoder/decoder weights, ``log_obs_sd``), ``opt_state`` (Adam's moments, used by
    ``warm_start``), ``anchor`` (the first fit's net, valid once ``anchored == 1``), ``anchored`` and
    ``train_loss`` (mean loss of the last 10 % of the last fit's steps)."""

    net: dict
    opt_state: Any
    anchor: dict
    anchored: jax.Array
    train_loss: jax.Array


class VAEReference(NamedTuple):
    """What the metrics compare against (one for all chains; build it with :func:`make_reference`).

    ``test_images`` (N, D) held-out real rows; ``classifier`` (or ``None``); ``rare`` (K,) 1.0 for the rare
    classes; ``feature_mean`` (H,), ``feature_cov`` (H, H), ``feature_cov_sqrt`` (H, H): the classifier features of
    the real test rows; ``hist_edges`` (B+1,) the bin edges of the latent histogram.
    """

    test_images: jax.Array
    classifier: Any = None
    rare: Any = None
    feature_mean: Any = None
    feature_cov: Any = None
    feature_cov_sqrt: Any = None
    hist_edges: Any = None


def make_reference(test_images, classifier: _clf.ClassifierParams | None = None, rare_classes=(),
                   hist_range: float = 4.0, hist_bins: int = 16) -> VAEReference:
    """A :class:`VAEReference` from real held-out rows and (optionally) a classifier trained on real data.

    The real features' mean and covariance (ddof 1) and the covariance's symmetric square root are computed here
    once (NumPy), so each chain's Fréchet distance needs only matrix products.
    """
    x = np.asarray(test_images, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"test_images has shape {x.shape}: need (N, D) with N >= 2")
    if isinstance(hist_bins, (bool, np.bool_)) or not isinstance(hist_bins, (int, np.integer)) or hist_bins < 1:
        raise ValueError(f"hist_bins={hist_bins!r} is out of range: need an int hist_bins >= 1")
    if not is_real(hist_range) or not math.isfinite(hist_range) or hist_range <= 0:
        raise ValueError(f"hist_range={hist_range!r} is out of range: need a finite hist_range > 0")
    hist_bins, hist_range = int(hist_bins), float(hist_range)
    dtype = jnp.zeros(()).dtype
    edges = jnp.linspace(-hist_range, hist_range, hist_bins + 1, dtype=dtype)
    if classifier is None:
        return VAEReference(jnp.asarray(x, dtype), hist_edges=edges)
    num_classes = int(np.shape(classifier.out["b"])[0])
    rare = np.zeros(num_classes)
    for c in rare_classes:
        whole = np.ndim(c) == 0 and np.asarray(c).dtype != bool and np.issubdtype(np.asarray(c).dtype, np.integer)
        if not whole or not 0 <= int(c) < num_classes:  # 1.5 is no class (int() would make it 1)
            raise ValueError(f"rare_classes contains {c!r}: need int classes in [0, {num_classes})")
        rare[int(c)] = 1.0
    feats = np.asarray(_clf.features(jax.tree.map(jnp.asarray, classifier), jnp.asarray(x, dtype)), np.float64)
    mean = feats.mean(axis=0)
    cov = np.atleast_2d(np.cov(feats, rowvar=False))
    w, v = np.linalg.eigh(cov)
    sqrt = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    cast = lambda a: jnp.asarray(a, dtype)  # noqa: E731
    return VAEReference(cast(x), jax.tree.map(cast, classifier), cast(rare), cast(mean), cast(cov), cast(sqrt),
                        edges)


def frechet_distance(mean_a, features_a, mean_b, cov_b_sqrt, cov_b) -> jax.Array:
    r"""Fréchet distance :math:`\|\mu_a-\mu_b\|^2 + \mathrm{tr}\,\Sigma_a + \mathrm{tr}\,\Sigma_b
    - 2\,\mathrm{tr}(\Sigma_b^{1/2}\Sigma_a\Sigma_b^{1/2})^{1/2}` between Gaussians (the squared W2; "FID" when
    the features are Inception's), with :math:`\Sigma_a = F^\top F/(n-1)` for the centred features ``features_a``
    (n, H) of the sample: :math:`\mathrm{tr}(\Sigma_b^{1/2}\Sigma_a\Sigma_b^{1/2})^{1/2} =
    \|F\Sigma_b^{1/2}\|_*/\sqrt{n-1}` (:func:`nuclear_norm`)."""
    n = features_a.shape[0]
    centred = features_a - mean_a[None, :]
    trace_a = jnp.sum(centred**2) / (n - 1)
    cross = nuclear_norm(centred @ cov_b_sqrt) / jnp.sqrt(jnp.asarray(n - 1, centred.dtype))
    return jnp.sum((mean_a - mean_b) ** 2) + trace_a + jnp.trace(cov_b) - 2 * cross


def _standardiser(data: jax.Array, weights: jax.Array):
    """``(shift, scale)`` with ``(x - shift)/scale`` of pooled sd 1 and mean 1 in every coordinate: scale is the
    rows' pooled weighted sd (1 where they have no spread or no weight), shift = mean - scale. Mean 1 rather than 0:
    on centred rows the gradients of both biases vanish identically (their optimum is 0 by symmetry), and Adam,
    which divides a gradient by its own size, would turn their rounding noise into steps of the full step size."""
    total = jnp.sum(weights)
    safe = jnp.where(total > 0, total, 1.0)
    mean = weights @ data / safe
    spread = jnp.sqrt(weights @ jnp.sum((data - mean[None, :]) ** 2, axis=1) / (safe * data.shape[1]))
    scale = jnp.where(spread > 0, spread, 1.0)
    return mean - scale, scale


def _unstandardise_linear(net: dict, shift: jax.Array, scale: jax.Array) -> dict:
    """A linear VAE trained on x' = (x − shift)/scale as the same VAE on x: encoder x'V + c = x(V/s) + (c − shift
    V/s), decoder x = shift + s(zW + b), observation sd s·σ (the encoder's latent variances are unchanged)."""
    enc, dec = net["enc"]["mean"], net["dec"]
    w_in = enc["w"] / scale
    out = dict(net)
    out["enc"] = {**net["enc"], "mean": {"w": w_in, "b": enc["b"] - shift @ w_in}}
    out["dec"] = {"w": dec["w"] * scale, "b": shift + scale * dec["b"]}
    out["log_obs_sd"] = net["log_obs_sd"] + jnp.log(scale)
    return out


@dataclasses.dataclass(frozen=True)
class VAE:
    r"""A VAE refitted on its own samples (see the module docstring for the model, training and sampling).

    Args:
      image_shape: (H, W) of the images, or (D,) for plain vectors; data rows are flattened, D = H·W.
      latent_dim: L ≥ 1.
      hidden: dense hidden sizes of the MLP encoder (decoder mirrored); the conv variant's dense layer size is
        ``hidden[0]``.
      architecture: ``"mlp"``, ``"conv"`` or ``"linear"``.
      likelihood: ``"bernoulli"`` or ``"gaussian"``.
      obs_sd: Gaussian likelihood σ > 0, or ``None`` to learn it.
      steps: Adam steps per generation ≥ 1.
      batch_size: rows per step (weighted, with replacement), or ``None`` for the full weighted batch.
      learning_rate: Adam step size > 0.
      schedule: ``"constant"`` or ``"cosine"`` (decay to 0 over ``steps``).
      beta: weight β ≥ 0 of the KL term.
      warm_start: continue from the previous generation's network and optimiser state instead of a fresh one.
      sample_mode: ``"mean"`` (decoder means) or ``"sample"`` (draws from the likelihood).
      num_eval_samples: generated rows per chain for the metrics (≥ 2).
    """

    image_shape: tuple = (8, 8)
    latent_dim: int = 4
    hidden: tuple = (128,)
    architecture: str = "mlp"
    likelihood: str = "bernoulli"
    obs_sd: float | None = None
    steps: int = 500
    batch_size: int | None = 64
    learning_rate: float = 1e-3
    schedule: str = "constant"
    beta: float = 1.0
    warm_start: bool = False
    sample_mode: str = "mean"
    num_eval_samples: int = 256

    def __post_init__(self):
        shape = tuple(self.image_shape) if isinstance(self.image_shape, (tuple, list)) else None
        if (not shape or len(shape) > 2
                or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in shape)):
            raise ValueError(f"image_shape={self.image_shape!r} is out of range: need (H, W) or (D,) of ints >= 1")
        object.__setattr__(self, "image_shape", tuple(int(s) for s in shape))
        _clf.check_positive("latent_dim", self.latent_dim, integer=True)
        _clf.check_positive("steps", self.steps, integer=True)
        n_eval = self.num_eval_samples
        if isinstance(n_eval, bool) or not isinstance(n_eval, (int, np.integer)) or n_eval < 2:
            raise ValueError(f"num_eval_samples={n_eval!r} is out of range: need an int >= 2 (a sample covariance "
                             "and a pairwise distance need two rows)")
        if self.batch_size is not None:
            _clf.check_positive("batch_size", self.batch_size, integer=True)
        _clf.check_positive("learning_rate", self.learning_rate)
        if not isinstance(self.hidden, (tuple, list)):  # VAE(hidden=64) used to fail with a TypeError
            raise ValueError(f"hidden={self.hidden!r} is not a tuple of layer widths: write hidden=({self.hidden!r},)")
        object.__setattr__(self, "hidden", tuple(self.hidden))  # hashable: the model is a static argument
        for h in self.hidden:
            _clf.check_positive("hidden", h, integer=True)
        for name, allowed in (("architecture", ARCHITECTURES), ("likelihood", LIKELIHOODS),
                              ("sample_mode", SAMPLE_MODES), ("schedule", SCHEDULES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {allowed}")
        b = self.beta
        if not is_real(b) or not math.isfinite(b) or b < 0:
            raise ValueError(f"beta={b!r} is out of range: need a finite beta >= 0")
        if self.obs_sd is not None:
            _clf.check_positive("obs_sd", self.obs_sd)
        if self.architecture != "linear" and not self.hidden:
            raise ValueError(f"hidden={self.hidden!r}: the {self.architecture} architecture needs >= 1 hidden layer")
        if self.architecture == "linear" and self.likelihood != "gaussian":
            raise ValueError("architecture='linear' needs likelihood='gaussian' (the probabilistic-PCA VAE)")
        if self.architecture == "conv":
            if len(self.image_shape) != 2 or any(s % 4 for s in self.image_shape):
                raise ValueError(f"image_shape={self.image_shape!r}: architecture='conv' needs (H, W) with H and W "
                                 "multiples of 4")

    # ------------------------------------------------------------------------------------------- sizes
    @property
    def dim(self) -> int:
        """Pixels per image, D."""
        return int(np.prod(self.image_shape))

    @property
    def min_samples(self) -> int:
        return 1

    def _check_rows(self, x, name="data"):
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{name} has rows of shape {x.shape[1:]}: image_shape={self.image_shape} needs rows "
                             f"of {self.dim} values (flattened images)")

    # ------------------------------------------------------------------------------------------- networks
    def init_net(self, key: jax.Array) -> dict:
        """A freshly initialised network."""
        d, latent = self.dim, self.latent_dim
        k_enc, k_dec, k_a, k_b = jax.random.split(key, 4)
        dtype = jnp.zeros(()).dtype
        net = {"log_obs_sd": jnp.zeros((), dtype)}
        if self.architecture == "linear":
            net["enc"] = {"mean": nn.dense_init(k_enc, d, latent, 1.0), "log_var": jnp.zeros((latent,), dtype)}
            net["dec"] = nn.dense_init(k_dec, latent, d, 1.0)
        elif self.architecture == "mlp":
            net["enc"] = nn.mlp_init(k_enc, (d,) + self.hidden + (2 * latent,))
            net["dec"] = nn.mlp_init(k_dec, (latent,) + self.hidden[::-1] + (d,))
        else:
            h, w = self.image_shape
            c1, c2 = _CONV_CHANNELS
            flat = (h // 4) * (w // 4) * c2
            k = jax.random.split(k_a, 4)
            net["enc"] = {"conv1": nn.conv_init(k[0], 1, c1), "conv2": nn.conv_init(k[1], c1, c2),
                          "dense": nn.mlp_init(k[2], (flat, self.hidden[0], 2 * latent))}
            kd = jax.random.split(k_b, 3)
            net["dec"] = {"dense": nn.mlp_init(kd[0], (latent, self.hidden[0], flat)),
                          "conv1": nn.conv_init(kd[1], c2, c1), "conv2": nn.conv_init(kd[2], c1, 1, gain=1.0)}
        return net

    def encode(self, net: dict, x: jax.Array):
        """Encoder mean and log-variance, each (..., L), of flattened rows ``x`` (..., D)."""
        latent = self.latent_dim
        if self.architecture == "linear":
            mean = nn.dense(net["enc"]["mean"], x)
            return mean, jnp.broadcast_to(net["enc"]["log_var"], mean.shape)
        if self.architecture == "mlp":
            out = nn.mlp(net["enc"], x)
        else:
            lead = x.shape[:-1]
            h, w = self.image_shape
            img = x.reshape((-1, h, w, 1))
            img = jax.nn.relu(nn.conv(net["enc"]["conv1"], img, stride=2))
            img = jax.nn.relu(nn.conv(net["enc"]["conv2"], img, stride=2))
            out = nn.mlp(net["enc"]["dense"], img.reshape((img.shape[0], -1))).reshape(lead + (2 * latent,))
        return out[..., :latent], out[..., latent:]

    def decode(self, net: dict, z: jax.Array) -> jax.Array:
        """Decoder output (..., D): logits (Bernoulli) or means (Gaussian)."""
        if self.architecture == "linear":
            return nn.dense(net["dec"], z)
        if self.architecture == "mlp":
            return nn.mlp(net["dec"], z)
        lead = z.shape[:-1]
        h, w = self.image_shape
        img = jax.nn.relu(nn.mlp(net["dec"]["dense"], z.reshape((-1, self.latent_dim))))
        img = img.reshape((-1, h // 4, w // 4, _CONV_CHANNELS[1]))
        img = jax.nn.relu(nn.conv(net["dec"]["conv1"], nn.upsample2(img)))
        img = nn.conv(net["dec"]["conv2"], nn.upsample2(img))
        return img.reshape(lead + (self.dim,))

    def _log_obs_sd(self, net):
        if self.obs_sd is not None:
            return jnp.log(jnp.asarray(self.obs_sd, net["log_obs_sd"].dtype))
        return net["log_obs_sd"]

    def loss_terms(self, net: dict, x: jax.Array, key: jax.Array):
        r"""Per-row reconstruction NLL :math:`-\mathbb E_q\log p(x|z)` (one reparametrised draw; exact for the
        linear VAE) and :math:`\mathrm{KL}(q\|N(0,I))`, each (n,)."""
        mean, log_var = self.encode(net, x)
        var = jnp.exp(log_var)
        kl = 0.5 * jnp.sum(mean**2 + var - 1.0 - log_var, axis=-1)
        d = self.dim
        if self.architecture == "linear":
            log_sd = self._log_obs_sd(net)
            w = net["dec"]["w"]
            resid = x - nn.dense(net["dec"], mean)
            row_norms = jnp.reshape(jnp.sum(w**2, axis=1), (1,) * (var.ndim - 1) + (self.latent_dim,))
            sq = jnp.sum(resid**2, axis=-1) + jnp.sum(var * row_norms, axis=-1)
            nll = 0.5 * sq * jnp.exp(-2 * log_sd) + d * log_sd + 0.5 * d * _LOG_2PI
            return nll, kl
        z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape, mean.dtype)
        out = self.decode(net, z)
        if self.likelihood == "bernoulli":
            nll = jnp.sum(jax.nn.softplus(out) - x * out, axis=-1)
        else:
            log_sd = self._log_obs_sd(net)
            nll = (0.5 * jnp.sum((x - out) ** 2, axis=-1) * jnp.exp(-2 * log_sd) + d * log_sd
                   + 0.5 * d * _LOG_2PI)
        return nll, kl

    def neg_elbo(self, net: dict, x: jax.Array, key: jax.Array) -> jax.Array:
        """Negative ELBO per row (n,) (β = 1, whatever the training β)."""
        nll, kl = self.loss_terms(net, x, key)
        return nll + kl

    def marginal_log_likelihood(self, net: dict, x: jax.Array) -> jax.Array:
        r"""Exact :math:`\log p_\theta(x)` of the linear-Gaussian VAE: :math:`N(x; b, W^\top W + \sigma^2 I)`."""
        if self.architecture != "linear":
            raise ValueError("marginal_log_likelihood is closed-form only for architecture='linear'")
        mean, cov = self.gaussian_moments(net)
        chol = jnp.linalg.cholesky(cov)
        white = jax.scipy.linalg.solve_triangular(chol, (x - mean[None, :]).T, lower=True)
        return (-0.5 * jnp.sum(white**2, axis=0) - jnp.sum(jnp.log(jnp.diagonal(chol)))
                - 0.5 * self.dim * _LOG_2PI)

    def gaussian_moments(self, net: dict):
        r"""Mean :math:`b` and covariance :math:`W^\top W + \sigma^2 I` of the linear VAE's generative law."""
        if self.architecture != "linear":
            raise ValueError("gaussian_moments needs architecture='linear'")
        w = net["dec"]["w"]
        sd2 = jnp.exp(2 * self._log_obs_sd(net))
        return net["dec"]["b"], w.T @ w + sd2 * jnp.eye(self.dim, dtype=w.dtype)

    # ------------------------------------------------------------------------------------------- parameters
    def _optimizer(self):
        lr = self.learning_rate
        if self.schedule == "cosine":
            decay = optax.cosine_decay_schedule(self.learning_rate, self.steps)
            steps = self.steps

            def lr(count):  # restarts every fit: a warm-started chain's Adam count keeps growing across fits
                return decay(count % steps)
        return optax.adam(lr)

    def _wrap(self, net, opt_state=None) -> VAEParams:
        dtype = jnp.zeros(()).dtype
        if opt_state is None:
            opt_state = self._optimizer().init(net)
        return VAEParams(net, opt_state, net, jnp.zeros((), dtype), jnp.zeros((), dtype))

    def init(self, key: jax.Array) -> VAEParams:
        """A chain's start when the real data is a dataset: a random network (never sampled: t = 1 uses the
        real rows)."""
        return self._wrap(self.init_net(key))

    def gaussian_params(self, mean=0.0, cov=1.0) -> VAEParams:
        r"""Linear-VAE parameters whose generative law is :math:`N(\text{mean}, \text{cov})` (up to
        σ = 1e-12 observation noise): a Gaussian truth for ``simulate(truth=...)``."""
        if self.architecture != "linear" or self.obs_sd is not None:
            raise ValueError("gaussian_params needs architecture='linear' with a learned obs_sd (obs_sd=None)")
        if self.latent_dim != self.dim:
            raise ValueError(f"gaussian_params needs latent_dim == dim ({self.latent_dim} != {self.dim})")
        d = self.dim
        mean = np.broadcast_to(np.asarray(mean, np.float64), (d,))
        cov = np.asarray(cov, np.float64)
        cov = cov * np.eye(d) if cov.ndim == 0 else cov
        if cov.shape != (d, d) or not np.allclose(cov, cov.T) or np.linalg.eigvalsh(cov).min() <= 0:
            raise ValueError(f"cov must be a positive definite ({d}, {d}) matrix (or a positive scalar)")
        dtype = jnp.zeros(()).dtype
        net = self.init_net(jax.random.key(0))
        net["dec"] = {"w": jnp.asarray(np.linalg.cholesky(cov).T, dtype), "b": jnp.asarray(mean, dtype)}
        net["log_obs_sd"] = jnp.asarray(math.log(1e-12), dtype)
        return self._wrap(net)

    # ------------------------------------------------------------------------------------------- sample path
    def sample_net(self, key: jax.Array, net: dict, n: int) -> jax.Array:
        """``n`` rows (n, D) from a network: decode :math:`z\\sim N(0,I)` (``sample_mode``)."""
        k_z, k_x = jax.random.split(key)
        dtype = net["log_obs_sd"].dtype
        out = self.decode(net, jax.random.normal(k_z, (n, self.latent_dim), dtype))
        if self.likelihood == "bernoulli":
            if self.sample_mode == "mean":
                return jax.nn.sigmoid(out)
            return jax.random.bernoulli(k_x, jax.nn.sigmoid(out)).astype(dtype)
        if self.sample_mode == "mean":
            return out
        return out + jnp.exp(self._log_obs_sd(net)) * jax.random.normal(k_x, out.shape, dtype)

    def sample(self, key: jax.Array, params: VAEParams, n: int) -> jax.Array:
        return self.sample_net(key, params.net, n)

    def train(self, key: jax.Array, data: jax.Array, weights: jax.Array, net: dict, opt_state):
        """``steps`` Adam steps from ``net``/``opt_state``; returns the trained net, optimiser state and the loss
        per step (steps,)."""
        x = jnp.asarray(data)
        self._check_rows(x)
        x = x.astype(net["log_obs_sd"].dtype)
        w = weights.astype(x.dtype)
        opt = self._optimizer()

        def loss_fn(p, batch, bw, k):
            nll, kl = self.loss_terms(p, batch, k)
            return jnp.sum(bw * (nll + self.beta * kl)) / jnp.sum(bw)

        cdf = jnp.cumsum(w)  # minibatch rows by inverse-CDF sampling: P(row i) = w_i / sum(w)
        last = jnp.maximum(jnp.sum(cdf < cdf[-1]), 0)  # the last row of positive weight

        def step(carry, k):
            p, state = carry
            k_batch, k_eps = jax.random.split(k)
            if self.batch_size is None:
                batch, bw = x, w
            else:
                u = jax.random.uniform(k_batch, (self.batch_size,), x.dtype) * cdf[-1]
                index = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), last)
                batch, bw = x[index], jnp.ones((self.batch_size,), x.dtype)
            loss, grads = jax.value_and_grad(loss_fn)(p, batch, bw, k_eps)
            updates, state = opt.update(grads, state, p)
            return (optax.apply_updates(p, updates), state), loss

        (net, opt_state), losses = jax.lax.scan(step, (net, opt_state), jax.random.split(key, self.steps))
        return net, opt_state, losses

    def fit(self, key: jax.Array, data: jax.Array, weights: jax.Array, params: VAEParams) -> VAEParams:
        """Train a fresh VAE (or continue, ``warm_start``) on the weighted rows; record the first fit as anchor.

        A training set of total weight 0 (every synthetic row rejected by a gate, no real rows) keeps the previous
        model unchanged."""
        k_init, k_train = jax.random.split(key)
        if self.warm_start:
            net, opt_state = params.net, params.opt_state
        else:
            net = self.init_net(k_init)
            opt_state = self._optimizer().init(net)
        if self.architecture == "linear" and self.obs_sd is None and not self.warm_start:
            # Train in standardised coordinates x' = (x - shift)/s and map the optimum back: an exact
            # reparametrisation of the linear-Gaussian VAE (the ELBO changes by the constant d·log s per row), so
            # the fit reaches the maximum likelihood fit at any data scale, not only near the unit-scale init.
            shift, scale = _standardiser(data, weights)
            net, opt_state, losses = self.train(k_train, (data - shift[None, :]) / scale, weights, net, opt_state)
            net = _unstandardise_linear(net, shift, scale)
            losses = losses + self.dim * jnp.log(scale)
        else:
            net, opt_state, losses = self.train(k_train, data, weights, net, opt_state)
        tail = max(1, self.steps // 10)
        # a generation whose rows all have weight 0 (a gate rejected every sample) keeps the previous model
        empty = jnp.sum(weights) <= 0
        keep = lambda new, old: jnp.where(empty, old, new)  # noqa: E731
        net = jax.tree.map(keep, net, params.net)
        opt_state = jax.tree.map(keep, opt_state, params.opt_state)
        first = (params.anchored == 0) & ~empty
        anchor = jax.tree.map(lambda new, old: jnp.where(first, new, old), net, params.anchor)
        anchored = jnp.where(empty, params.anchored, jnp.ones_like(params.anchored))
        return VAEParams(net, opt_state, anchor, anchored, keep(jnp.mean(losses[-tail:]), params.train_loss))

    # ------------------------------------------------------------------------------------------- observables
    def metrics(self, params: VAEParams, reference: VAEReference | None, key: jax.Array) -> dict[str, jax.Array]:
        r"""Per-chain observables of the fitted VAE.

        Always: ``train_loss``; ``diversity``, the mean pairwise Euclidean distance between ``num_eval_samples``
        generated rows; ``latent_sd``, the sd of the generation-0 (anchor) encoder's latent means over the
        generated rows (pooled over latent coordinates), and ``latent_hist_{b}``, the fraction of those means in
        bin b of ``reference.hist_edges`` (values outside the range are counted in the end bins).

        With ``reference.test_images``: ``neg_elbo``, the negative ELBO (β = 1, one draw per row) per held-out real
        row; for Gaussian likelihoods this bounds :math:`-\log p_\theta(x)` from above.

        With ``reference.classifier``: ``share_{c}``, the fraction of generated rows the classifier assigns to class
        c **with top-class probability ≥ 0.9** (``CONFIDENCE``; an unrecognisable blur counts for no class, so a
        degraded sample cannot inflate a rare class that happens to look like a blur); ``rare_share``, their total
        over the rare classes; ``confident``, the fraction recognised at all (the sum of the shares);
        ``frechet``, the Fréchet distance between the classifier features of generated and
        real held-out rows.

        With a Gaussian ``truth=`` and no ``reference=`` only the metrics that need no reference are computed.
        For ``architecture="linear"``: ``log_det_cov``, ``trace_cov`` (of :math:`W^\top W+\sigma^2 I`) and
        ``mean_sq_norm`` :math:`\|b\|^2`, the Gaussian family's quantities.
        """
        k_elbo, k_gen = jax.random.split(key)
        if isinstance(reference, VAEParams):  # simulate(truth=...) without reference=: nothing to compare with
            reference = None
        net = params.net
        out = {"train_loss": params.train_loss}
        gen = self.sample_net(k_gen, net, self.num_eval_samples)
        sq = jnp.sum(gen**2, axis=1)
        dist2 = jnp.maximum(sq[:, None] + sq[None, :] - 2 * gen @ gen.T, 0.0)
        n = self.num_eval_samples
        off = 1.0 - jnp.eye(n, dtype=gen.dtype)
        safe = jnp.where(off > 0, dist2, 1.0)
        out["diversity"] = jnp.sum(off * jnp.sqrt(safe)) / max(n * (n - 1), 1)
        latent_mean, _ = self.encode(params.anchor, gen)
        out["latent_sd"] = jnp.sqrt(jnp.mean((latent_mean - latent_mean.mean(axis=0, keepdims=True)) ** 2))
        if reference is not None and reference.hist_edges is not None:
            edges = reference.hist_edges
            inner = edges[1:-1]
            index = jnp.sum(latent_mean.reshape(-1)[:, None] >= inner[None, :], axis=1)
            counts = jnp.sum(index[:, None] == jnp.arange(edges.shape[0] - 1)[None, :], axis=0)
            for b in range(edges.shape[0] - 1):
                out[f"latent_hist_{b:02d}"] = counts[b] / latent_mean.size
        if reference is not None:
            test = reference.test_images.astype(gen.dtype)
            self._check_rows(test, "reference.test_images")
            out["neg_elbo"] = jnp.mean(self.neg_elbo(net, test, k_elbo))
        if reference is not None and reference.classifier is not None:
            clf = reference.classifier
            logits = _clf.logits(clf, gen)
            probs = jax.nn.softmax(logits)
            label = jnp.argmax(logits, axis=-1)
            sure = jnp.max(probs, axis=-1) >= CONFIDENCE
            num_classes = logits.shape[-1]
            hits = (label[:, None] == jnp.arange(num_classes)[None, :]) & sure[:, None]
            shares = jnp.mean(hits, axis=0).astype(gen.dtype)
            for c in range(num_classes):
                out[f"share_{c}"] = shares[c]
            out["rare_share"] = jnp.sum(shares * reference.rare)
            out["confident"] = jnp.mean(sure).astype(gen.dtype)
            feats = _clf.features(clf, gen)
            out["frechet"] = frechet_distance(feats.mean(axis=0), feats, reference.feature_mean,
                                              reference.feature_cov_sqrt, reference.feature_cov)
        if self.architecture == "linear":
            mean, cov = self.gaussian_moments(net)
            out["log_det_cov"] = 2 * jnp.sum(jnp.log(jnp.diagonal(_gmm.cholesky(cov))))
            out["trace_cov"] = jnp.trace(cov)
            out["mean_sq_norm"] = jnp.sum(mean**2)
        return out

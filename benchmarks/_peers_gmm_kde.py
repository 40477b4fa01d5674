"""Faithful NumPy re-implementations of the peers' scikit-learn loops (scikit-learn is not installed here).

* :func:`shumailov_gmm_chain` — Shumailov et al.'s GMM notebook loop: every generation fits
  ``GaussianMixture(n_components=2, covariance_type="full", tol=1e-5, max_iter=2000)`` (a fresh estimator, so a
  fresh k-means initialisation) to N samples and draws N new ones with ``gmm.sample(N)``. Re-implemented from
  scikit-learn's algorithm: ``KMeans(n_clusters=K, n_init=1)`` (greedy k-means++ with 2 + ⌊log K⌋ local trials,
  Lloyd iterations up to 300 with ``tol = 1e-4 ×`` mean feature variance), the labels' one-hot responsibilities, then
  EM with precision Cholesky factors (``_estimate_log_gaussian_prob``, ``_estimate_gaussian_parameters`` with
  ``reg_covar=1e-6``, ``_compute_precision_cholesky``), stopping when the mean log-likelihood changes by less than
  ``tol``; ``sample`` draws component counts from a multinomial and ``multivariate_normal`` rows per component.
* :func:`kazdan_kde_seed` — Kazdan et al.'s ``fit_kdes`` loop (accumulate): each iteration fits
  ``KernelDensity(kernel="gaussian", bandwidth=h)`` on all data so far, scores the fixed test set with
  ``score_samples`` (here an exact dense log-sum-exp; scikit-learn uses a KD-tree with ``atol = rtol = 0``, i.e.
  the same exact sums) and appends ``kde.sample(n)`` (a uniformly chosen row + N(0, h²I)).

These are single-threaded NumPy (OPENBLAS_NUM_THREADS=1, set by ``_common``), one chain at a time, as the peers ran.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import linalg


# ----------------------------------------------------------------------------------------------- k-means (sklearn)
def _kmeans_plusplus(x, k, rng):
    n = x.shape[0]
    trials = 2 + int(np.log(k))
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(n)]
    d2 = np.sum((x - centres[0]) ** 2, axis=1)
    pot = d2.sum()
    for c in range(1, k):
        rand = rng.random(trials) * pot
        idx = np.clip(np.searchsorted(np.cumsum(d2), rand), None, n - 1)
        cand_d2 = np.minimum(d2[None, :], np.sum((x[None, :, :] - x[idx][:, None, :]) ** 2, axis=2))
        pots = cand_d2.sum(axis=1)
        best = int(np.argmin(pots))
        centres[c], d2, pot = x[idx[best]], cand_d2[best], pots[best]
    return centres


def _kmeans_labels(x, k, rng, max_iter=300, tol=1e-4):
    centres = _kmeans_plusplus(x, k, rng)
    threshold = tol * np.mean(np.var(x, axis=0))
    for _ in range(max_iter):
        d2 = np.sum(x**2, 1)[:, None] - 2 * x @ centres.T + np.sum(centres**2, 1)[None, :]
        labels = np.argmin(d2, axis=1)
        new = np.array([x[labels == j].mean(0) if np.any(labels == j) else centres[j] for j in range(k)])
        shift = np.sum((new - centres) ** 2)
        centres = new
        if shift <= threshold:
            break
    d2 = np.sum(x**2, 1)[:, None] - 2 * x @ centres.T + np.sum(centres**2, 1)[None, :]
    return np.argmin(d2, axis=1)


# ----------------------------------------------------------------------------------------------- GMM EM (sklearn)
def _estimate_parameters(x, resp, reg):
    nk = resp.sum(axis=0) + 10 * np.finfo(resp.dtype).eps
    means = resp.T @ x / nk[:, None]
    k, d = means.shape
    covs = np.empty((k, d, d))
    for j in range(k):
        diff = x - means[j]
        covs[j] = (resp[:, j] * diff.T) @ diff / nk[j]
        covs[j].flat[:: d + 1] += reg
    return nk, means, covs


def _precision_cholesky(covs):
    k, d, _ = covs.shape
    prec = np.empty((k, d, d))
    for j, cov in enumerate(covs):
        chol = linalg.cholesky(cov, lower=True)
        prec[j] = linalg.solve_triangular(chol, np.eye(d), lower=True).T
    return prec


def _log_prob(x, means, prec):
    n, d = x.shape
    k = means.shape[0]
    log_det = np.sum(np.log(prec.reshape(k, -1)[:, :: d + 1]), axis=1)
    out = np.empty((n, k))
    for j in range(k):
        y = x @ prec[j] - means[j] @ prec[j]
        out[:, j] = np.sum(y**2, axis=1)
    return -0.5 * (d * np.log(2 * np.pi) + out) + log_det


def fit_gmm(x, k, rng, tol=1e-5, max_iter=2000, reg=1e-6):
    """scikit-learn's ``GaussianMixture(covariance_type="full").fit`` with k-means init; returns (w, means, covs)."""
    n = x.shape[0]
    labels = _kmeans_labels(x, k, rng)
    resp = np.zeros((n, k))
    resp[np.arange(n), labels] = 1
    nk, means, covs = _estimate_parameters(x, resp, reg)
    weights = nk / n
    prec = _precision_cholesky(covs)
    lower_bound = -np.inf
    for _ in range(max_iter):
        prev = lower_bound
        weighted = _log_prob(x, means, prec) + np.log(weights)
        log_norm = np.logaddexp.reduce(weighted, axis=1) if k > 1 else weighted[:, 0]
        resp = np.exp(weighted - log_norm[:, None])
        nk, means, covs = _estimate_parameters(x, resp, reg)
        weights = nk / n
        prec = _precision_cholesky(covs)
        lower_bound = log_norm.mean()
        if abs(lower_bound - prev) < tol:
            break
    return weights / weights.sum(), means, covs


def sample_gmm(weights, means, covs, n, rng):
    counts = rng.multinomial(n, weights)
    return np.vstack([rng.multivariate_normal(m, c, int(s)) for m, c, s in zip(means, covs, counts, strict=True)])


def shumailov_gmm_chain(num_generations: int, num_samples: int = 1000, seed: int = 0):
    """One chain of the notebook loop: real N(0, I₂) data, then fit/sample for ``num_generations`` fits."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_samples, 2))
    for _ in range(num_generations):
        w, m, c = fit_gmm(x, 2, rng)
        x = sample_gmm(w, m, c, num_samples, rng)
    return x


# ----------------------------------------------------------------------------------------------- KDE (sklearn)
def kde_score_samples(train, test, h, block=4096):
    """Exact log density of a Gaussian KDE (scikit-learn's normalisation), blocked over training rows."""
    n, d = train.shape
    top = np.full(test.shape[0], -np.inf)
    total = np.zeros(test.shape[0])
    for s in range(0, n, block):
        p = train[s : s + block]
        d2 = np.sum(test**2, 1)[:, None] - 2 * test @ p.T + np.sum(p**2, 1)[None, :]
        logits = -0.5 * d2 / h**2
        new_top = np.maximum(top, logits.max(axis=1))
        total = total * np.exp(top - new_top) + np.exp(logits - new_top[:, None]).sum(axis=1)
        top = new_top
    return top + np.log(total) - math.log(n) - 0.5 * d * math.log(2 * math.pi * h**2)


def kazdan_kde_seed(num_iterations: int, num_samples: int, h: float, seed: int = 0, num_test: int = 500):
    """Kazdan et al.'s accumulate KDE loop for one seed on 3 random blobs; returns the NLL per iteration."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, size=(3, 2))

    def blobs(n):
        return centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 2))

    data, test = blobs(num_samples), blobs(num_test)
    nll = []
    for _ in range(num_iterations):
        nll.append(-kde_score_samples(data, test, h).mean())
        new = data[rng.integers(0, data.shape[0], num_samples)] + h * rng.normal(size=(num_samples, 2))
        data = np.concatenate([data, new])
    return np.asarray(nll)

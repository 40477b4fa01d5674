r"""Add-α smoothing turns the collapse of a categorical chain into a drift–mutation balance, with exact theory.

Left: a categorical chain (K = 10 outcomes, Zipf(1) truth) refitted by replace on M = 10 samples, each fit
:math:`p_t = (c_t + \alpha)/(M + K\alpha)`, for α ∈ {0, 0.01, 0.1, 1}; exact multinomial-count path, float64. With
α = 0 the heterozygosity :math:`H = 1 - \sum_i p_i^2` decays to 0 (Wright–Fisher); with α > 0 it settles at

.. math:: \mathbb E H_t = H^* + a^t (H_0 - H^*),\quad a = \frac{M(M-1)}{(M+K\alpha)^2},\quad
          H^* = \frac{\alpha(K-1)(2M+K\alpha)}{M + 2MK\alpha + K^2\alpha^2}

(:func:`collapse_theory.theory.categorical.expected_smoothed_heterozygosity`, derived in its docstring; dotted:
:math:`H^*`). Right: the tiny language model (:class:`collapse_theory.models.NGram`, bigram, the default grammar:
V = 115 tokens, 60 facts, fact fraction 0.4) refitted on M = 100 of its own sentences. Its sentence-start row is a
smoothed categorical chain over the K = V − 2 emittable tokens, so the share of fact sentences
:math:`\sum_e P_t(e \mid \mathrm{BOS})` follows :math:`\mathbb E p_t = 1/K + r^t (p_0 - 1/K)`, r = M/(M + Kα)
(:func:`~collapse_theory.theory.categorical.expected_smoothed_probs`): smoothing drags it to 60/113 ≈ 0.53, the
entities' share of the uniform row, whatever the data said.

Run: ``python experiments/fig_categorical_smoothing.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

import numpy as np

NAME = "categorical_smoothing"
DESCRIPTION = ("Add-α smoothed refits: heterozygosity settles at a drift–mutation balance H*; the tiny LM's fact "
               "share drifts to the uniform row's; exact theory")

K, M_CAT, BETA = 10, 10, 1.0
ALPHAS_CAT = (0.0, 0.01, 0.1, 1.0)
M_LM = 100
ALPHAS_LM = (0.0, 0.01, 0.05)
COLORS = ("#222222", "#1f5f9f", "#e76300", "#2ca02c")
MARKERS = ("o", "s", "^", "D")


def parse_args(argv):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(NAME, DESCRIPTION, "fewer chains (seconds)")
    parser.add_argument("--num-chains", type=int, default=None,
                        help="categorical chains (default 4000; quick 500); the LM runs half as many")
    parser.add_argument("--num-generations", type=int, default=60, help="generations (default 60)")
    return parser.parse_args(argv)


def run(seed: int, num_chains: int, num_generations: int) -> dict:
    import jax

    from collapse_theory import Replace, setups, simulate
    from collapse_theory.checks.ngram import expected_fact_share
    from collapse_theory.models.categorical import Categorical
    from collapse_theory.theory import categorical as th

    t = np.arange(1, num_generations + 1)
    out = {"t": t, "lm_chains": max(num_chains // 2, 2)}
    p0 = th.zipf_probs(K, BETA)
    h0 = th.heterozygosity(p0)
    with jax.enable_x64(True):
        for alpha in ALPHAS_CAT:
            model = Categorical(K, smoothing=alpha, max_samples=M_CAT)
            res = simulate(seed, model, Replace(), num_chains=num_chains, num_generations=num_generations,
                           num_samples=M_CAT, truth=model.params(p0), path="exact", metrics=["heterozygosity"],
                           quantiles=())
            out["cat", alpha] = (res.mean("heterozygosity"), res.se("heterozygosity"),
                                 th.expected_smoothed_heterozygosity(t, M_CAT, h0, alpha, K),
                                 th.smoothed_heterozygosity_limit(M_CAT, alpha, K))
        for alpha in ALPHAS_LM:
            s = setups.ngram(seed, num_reference=1, smoothing=alpha, num_metric_samples=2, bleu_samples=2,
                             ttr_tokens=1)
            res = simulate(seed, s.model, Replace(), num_chains=out["lm_chains"], num_generations=num_generations,
                           num_samples=M_LM, metrics=["fact_share"], quantiles=(), **s.simulate_kwargs())
            theory = expected_fact_share(s.model, t, M_LM)
            out["lm", alpha] = (res.mean("fact_share"), res.se("fact_share"), theory)
        grammar = s.model.grammar
        out["lm_limit"] = grammar.num_entities / (grammar.vocab_size - 2)
        out["lm_f"] = grammar.fact_fraction
    return out


def plot(d: dict, *, num_chains: int, num_generations: int, seed: int):
    from collapse_theory import plotting

    fig, (left, right) = plotting.new_figure(1, 2, figsize=(6.8, 3.0))
    t = d["t"]
    handles, labels = [], []
    for alpha, color, marker in zip(ALPHAS_CAT, COLORS, MARKERS, strict=True):
        mean, se, theory, limit = d["cat", alpha]
        art = plotting.theory_vs_simulation(left, t, mean, se, theory, color=color, marker=marker, num_markers=12,
                                            markersize=3)
        handles.append(art["handle"])
        labels.append(f"α = {alpha:g}")
        if alpha > 0:
            left.axhline(limit, color=color, linestyle=":", linewidth=0.9)
    left.set_ylim(0.0, 0.95)
    left.set_xlabel("generation t (number of fits)")
    left.set_ylabel(r"heterozygosity $1-\sum_i p_i^2$")
    left.set_title(f"categorical, K = {K}, Zipf({BETA:g}) truth, M = {M_CAT}", fontsize="small")
    left.legend(handles, labels, loc="lower left", fontsize="x-small")
    handles, labels = [], []
    for alpha, color, marker in zip(ALPHAS_LM, COLORS, MARKERS, strict=False):
        mean, se, theory = d["lm", alpha]
        art = plotting.theory_vs_simulation(right, t, mean, se, theory, color=color, marker=marker, num_markers=12,
                                            markersize=3)
        handles.append(art["handle"])
        labels.append(f"α = {alpha:g}")
    right.axhline(d["lm_limit"], color="0.5", linestyle=":", linewidth=0.9)
    right.set_xlabel("generation t (number of fits)")
    right.set_ylabel(r"fact share $\sum_e P_t(e \mid \mathrm{BOS})$")
    right.set_title(f"tiny LM (bigram), M = {M_LM} sentences", fontsize="small")
    right.legend(handles, labels, loc="upper left", fontsize="x-small")
    plotting.suptitle(fig, "Add-α smoothing: collapse becomes a drift–mutation balance")
    plotting.caption(
        fig,
        f"Mean over chains ± 2 SE (markers, band; {num_chains} categorical and {d['lm_chains']} LM chains); solid: "
        "exact theory. Left: $E H_t = H^* + a^t (H_0 - H^*)$, $a = M(M-1)/(M+K\\alpha)^2$, dotted: "
        "$H^* = \\alpha(K-1)(2M+K\\alpha)/(M+2MK\\alpha+K^2\\alpha^2)$; α = 0 is Wright–Fisher. Right: the "
        "sentence-start row is a smoothed categorical chain over K = V − 2 = 113 tokens: "
        f"$E p_t = 1/K + r^t(p_0 - 1/K)$, $r = M/(M+K\\alpha)$; dotted: 60/113, the uniform row's fact share "
        f"(truth {d['lm_f']:g}). Replace, temperature 1, float64, {num_generations} generations, seed {seed}.",
    )
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    num_chains = args.num_chains or (500 if args.quick else 4000)
    from collapse_theory import plotting

    return plotting.run_figure(
        NAME, args.out,
        lambda: run(args.seed, num_chains, args.num_generations),
        lambda data: plot(data, num_chains=num_chains, num_generations=args.num_generations, seed=args.seed))


if __name__ == "__main__":
    raise SystemExit(main())

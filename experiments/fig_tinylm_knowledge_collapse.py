r"""Knowledge collapse in a tiny language model ("fluency survives, facts fail"), and Guo et al.'s diversity table.

Setup (:mod:`collapse_theory.corpus`, :class:`collapse_theory.models.NGram`): the default grammar (V = 115 tokens;
fluency sentences ``SDET SNOUN VERB ODET [ADJ] ONOUN .`` and, with probability 0.4, fact sentences
``ENTITY ATTR VERB ODET [ADJ] ONOUN .`` over 60 entities with Zipf(1) frequencies, 12 attribute values); a bigram
model (facts are adjacent ``ENTITY ATTR`` pairs) with add-α smoothing, sampled at temperature τ = 1; M = 2000
sentences per generation; generation 1 fits M real sentences (drawn from the grammar's exact law). Each chain then
samples its next corpus and refits. Two smoothing strengths, stated up front rather than tuned:

* α = 1e-4 ("near-MLE": (V − 2)α ≈ 0.011 pseudo-counts per context, the regime of Shumailov et al.'s discrete
  analysis): a fact fails by being **forgotten**: its entity stops being sampled (Zipfian tail, Wright–Fisher
  drift) and its row falls back to the uniform smoothing row.
* α = 1e-2 ((V − 2)α ≈ 1.1 pseudo-counts per context): smoothing mass is re-sampled every generation, so rare rows
  are **corrupted** (wrong attributes, ungrammatical continuations) as well as forgotten.

A gate can only filter what the model still generates: it cannot recover a fact whose entity is no longer sampled,
and by rejecting the (less reliable) fact sentences more often than fluency sentences it lowers the share of fact
sentences, Σ_e P(e | BOS), which the figure also shows.

Regimes: replace; accumulate (Gerstgrasser et al.); fresh fraction γ = 0.1; and two verification gates around
replace (:class:`collapse_theory.regimes.Gate`, rejected synthetic sentences get weight 0): a grammar-only gate
(:class:`~collapse_theory.corpus.GrammarCheck`) and a fact gate (:class:`~collapse_theory.corpus.FactCheck`:
grammatical and every stated ENTITY→ATTR pair true in the real corpus).

Panels (rows: α; bands: mean ± 2 SE over chains): perplexity on 2000 held-out real sentences (exact given the
model); perplexity of the model on its own samples (empirical); grammaticality of samples (empirical); fact accuracy
(exact: argmax completion of ``[BOS, e]`` is the true attribute) for the head, torso and tail thirds of the Zipfian
facts; the share of fact sentences (exact).

Also written: ``tinylm_lexical_diversity.md`` / ``.csv``, the lexical-diversity table in the shape of Guo et al.'s
(metric per generation; ↑/↓ when the paired change from generation 1 exceeds 2 SE over chains, ≈ otherwise):
TTR of the first 1000 words of 256 sampled sentences, distinct-2, distinct-3, 1 − self-BLEU (BLEU+1, orders 1–3,
64 sentences), plus the same metrics on real sentences.

Run: ``python experiments/fig_tinylm_knowledge_collapse.py [--quick] [--out figures] [--seed 0]``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

NAME = "tinylm_knowledge_collapse"
DESCRIPTION = ("Tiny bigram LM on a Zipfian fact grammar: perplexity, grammaticality and fact accuracy by frequency "
               "bucket under replace / accumulate / fresh data / grammar gate / fact gate; Guo et al. diversity table")

SMOOTHINGS = (1e-4, 1e-2)
REGIMES = ("replace", "accumulate", "fresh 10%", "gate: grammar", "gate: facts")
COLORS = {"replace": "#d62728", "accumulate": "#1f77b4", "fresh 10%": "#2ca02c", "gate: grammar": "#ff7f0e",
          "gate: facts": "#9467bd"}
NUM_SAMPLES = 2000
NUM_REFERENCE = 2000
DIVERSITY = (("ttr", "TTR (1000 words)"), ("distinct_2", "distinct-2"), ("distinct_3", "distinct-3"),
             ("one_minus_self_bleu", "1 − self-BLEU"))
METRICS = ("perplexity", "perplexity_fluency", "perplexity_self", "grammaticality", "fact_check_rate",
           "fact_share", "fact_accuracy", "fact_accuracy_head", "fact_accuracy_torso", "fact_accuracy_tail",
           "mean_length", "ttr", "distinct_2", "distinct_3", "one_minus_self_bleu")


def parse_args(argv):
    from collapse_theory.plotting import experiment_parser

    parser = experiment_parser(NAME, DESCRIPTION, "fewer generations and chains (about a minute)")
    parser.add_argument("--num-chains", type=int, default=None, help="chains (default 32; quick 8)")
    parser.add_argument("--num-generations", type=int, default=None, help="generations (default 30; quick 8)")
    return parser.parse_args(argv)


def _regime(name, grammar):
    from collapse_theory import Accumulate, FreshFraction, Gate, Replace
    from collapse_theory.corpus import FactCheck, GrammarCheck

    return {"replace": Replace(), "accumulate": Accumulate(), "fresh 10%": FreshFraction(0.1),
            "gate: grammar": Gate(Replace(), GrammarCheck(grammar)),
            "gate: facts": Gate(Replace(), FactCheck(grammar))}[name]


def run(seed: int, num_chains: int, num_generations: int) -> dict:
    """Simulate every (smoothing, regime); return per-chain trajectories (G, C) of every metric."""
    import jax

    from collapse_theory import simulate
    from collapse_theory.corpus import Grammar
    from collapse_theory.models import NGram

    grammar = Grammar()
    out = {"trajectories": {}, "real": {}}
    with jax.enable_x64(True):
        reference = grammar.sample(jax.random.fold_in(jax.random.key(seed), 10**6), NUM_REFERENCE)
        for alpha in SMOOTHINGS:
            model = NGram.for_grammar(grammar, smoothing=alpha, temperature=1.0)
            for name in REGIMES:
                start = time.perf_counter()
                res = simulate(seed, model, _regime(name, grammar), num_chains=num_chains,
                               num_generations=num_generations, num_samples=NUM_SAMPLES, truth=model.true_params(),
                               reference=reference, metrics=list(METRICS), quantiles=(), trajectories=True)
                out["trajectories"][(alpha, name)] = res.trajectories
                print(f"  alpha={alpha:g} {name:14s} {time.perf_counter() - start:6.1f} s", flush=True)
        out["real"] = _real_diversity(grammar, model, seed, num_chains)
    return out


def _real_diversity(grammar, model, seed, num_chains):
    """The diversity metrics on real sentences (same batch sizes as the model's metrics), per draw."""
    import jax

    from collapse_theory import diversity as dv

    v = grammar.vocab_size

    def one(key):
        x = grammar.sample(key, model.num_metric_samples)
        return {"ttr": dv.type_token_ratio(x, model.ttr_tokens, v), "distinct_2": dv.distinct_n(x, 2, v),
                "distinct_3": dv.distinct_n(x, 3, v),
                "one_minus_self_bleu": 1.0 - dv.self_bleu(x[: model.bleu_samples], v, 3)}

    keys = jax.vmap(lambda c: jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 10**6 + 1), c))(
        np.arange(num_chains))
    return {k: np.asarray(v) for k, v in jax.jit(jax.vmap(one))(keys).items()}


def _mean_se(values):
    values = np.asarray(values, np.float64)
    return values.mean(axis=-1), values.std(axis=-1, ddof=1) / math.sqrt(values.shape[-1])


def plot(data: dict, *, num_chains: int, num_generations: int, seed: int):
    from collapse_theory import plotting

    panels = (("perplexity", "perplexity, held-out real text"), ("perplexity_self", "perplexity on own samples"),
              ("grammaticality", "grammaticality of samples"), ("fact_share", "share of fact sentences"),
              ("fact_accuracy_head", "fact accuracy: head third"), ("fact_accuracy_torso", "fact accuracy: torso"),
              ("fact_accuracy_tail", "fact accuracy: tail third"))
    # each α gets a block of two rows of four panels (seven metrics and its legend), so that the figure stays
    # readable at the width of a page (one row of 14 panels needed 18 inches)
    cols = 4
    rows_per = -(-len(panels) // cols)
    fig, axes = plotting.new_figure(len(SMOOTHINGS) * rows_per, cols, figsize=(10.0, 10.5), squeeze=False)
    t = np.arange(1, num_generations + 1)
    for block, alpha in enumerate(SMOOTHINGS):
        for slot in range(len(panels), rows_per * cols):  # the block's spare slot holds its legend
            spare = axes[block * rows_per + slot // cols, slot % cols]
            spare.axis("off")
        for col, (metric, title) in enumerate(panels):
            row = block * rows_per + col // cols
            ax = axes[row, col % cols]
            for name in REGIMES:
                mean, se = _mean_se(data["trajectories"][(alpha, name)][metric])
                ax.plot(t, mean, color=COLORS[name], label=name, lw=1.4)
                ax.fill_between(t, mean - 2 * se, mean + 2 * se, color=COLORS[name], alpha=0.2, lw=0)
            ax.set_title(f"{title}\n(α = {alpha:g})", fontsize=8)
            ax.tick_params(labelsize=7)
            if metric.startswith("fact_accuracy") or metric == "grammaticality":
                ax.set_ylim(-0.03, 1.03)
            if metric == "fact_share":
                ax.axhline(0.4, color="k", lw=0.8, ls=":")
                ax.set_ylim(0.0, 0.5)
            if row % rows_per == rows_per - 1 or col + cols >= len(panels):
                ax.set_xlabel("generation t (fits)", fontsize=8)
        handles, labels = axes[block * rows_per, 0].get_legend_handles_labels()
        spare = axes[block * rows_per + rows_per - 1, cols - 1]
        spare.legend(handles, labels, loc="center", fontsize=8, title=f"α = {alpha:g}", title_fontsize=8)
    plotting.suptitle(fig, "Knowledge collapse in a tiny bigram LM: facts fail under replace and behind gates, "
                           f"accumulation keeps them ({num_chains} chains, M = {NUM_SAMPLES} sentences per generation)")
    plotting.caption(
        fig,
        "Grammar: 115 tokens; 40% fact sentences ENTITY ATTR ... over 60 entities with Zipf(1) frequencies; bigram, "
        "add-α smoothing, τ = 1; t = 1 fits real text. Bands: mean ± 2 SE over chains. Fact accuracy (exact): argmax "
        "completion of [BOS, e] is the true attribute (ties count as wrong). Share of fact sentences: "
        "Σ_e P(e | BOS) (dotted: real 0.4). Gates wrap replace: rejected synthetic sentences get weight 0. "
        f"Fresh: 10% of each generation is real. Seed {seed}. Upper half (near-MLE): samples stay grammatical and "
        "the model grows more confident on its own text while held-out perplexity rises and facts are forgotten "
        "(gates see almost nothing to reject). Lower half (α = 0.01): smoothing noise also erodes grammar; gates "
        "restore grammaticality but reject fact sentences more often, so facts vanish faster.")
    return fig


def _arrow(diff):
    mean, se = _mean_se(diff)
    if se > 0 and abs(mean) > 2 * se:
        return "↑" if mean > 0 else "↓"
    return "≈" if se > 0 or mean == 0 else ("↑" if mean > 0 else "↓")


def table(data: dict, num_generations: int) -> tuple[str, str]:
    """Markdown and CSV of the diversity metrics per generation (Guo et al. Table shape)."""
    gens = [g for g in (1, 2, 5, 10, 20, 30, 50, 100) if g <= num_generations]
    if gens[-1] != num_generations:
        gens.append(num_generations)
    md = ["# Lexical diversity of a tiny bigram LM over generations (Guo et al. 2024 table shape)", "",
          "Mean over chains of each metric on sentences sampled from the generation-t model (τ = 1); ↑/↓: the paired "
          "change from t = 1 exceeds 2 SE over chains, ≈: it does not. Real: the same metrics on real sentences "
          "(mean over draws). TTR on the first 1000 words of 256 sentences; distinct-n within sentences; "
          "self-BLEU = BLEU+1 (orders 1–3) of each of 64 sentences against the other 63.", ""]
    csv = ["smoothing,regime,metric,generation,mean,se"]
    real = data["real"]
    for alpha in SMOOTHINGS:
        md += [f"## α = {alpha:g}", "", "| regime | metric | real | " + " | ".join(f"t = {g}" for g in gens) + " |",
               "|---|---|---|" + "---|" * len(gens)]
        for name in REGIMES:
            traj = data["trajectories"][(alpha, name)]
            for metric, label in DIVERSITY:
                values = np.asarray(traj[metric])
                cells = []
                for g in gens:
                    mean, se = _mean_se(values[g - 1])
                    arrow = "" if g == 1 else " " + _arrow(values[g - 1] - values[0])
                    cells.append(f"{mean:.3f}{arrow}")
                    csv.append(f"{alpha:g},{name},{metric},{g},{mean:.6g},{se:.3g}")
                real_mean, _ = _mean_se(real[metric])
                md.append(f"| {name} | {label} | {real_mean:.3f} | " + " | ".join(cells) + " |")
        md.append("")
    for metric, _ in DIVERSITY:
        mean, se = _mean_se(real[metric])
        csv.append(f",real,{metric},0,{mean:.6g},{se:.3g}")
    return "\n".join(md) + "\n", "\n".join(csv) + "\n"


def summary_lines(data: dict, num_generations: int) -> list[str]:
    gens = sorted({1, min(10, num_generations), num_generations})
    lines = []
    for alpha in SMOOTHINGS:
        for name in REGIMES:
            traj = data["trajectories"][(alpha, name)]
            parts = []
            for metric in ("perplexity", "perplexity_fluency", "perplexity_self", "grammaticality",
                           "fact_check_rate", "fact_share", "fact_accuracy_head", "fact_accuracy_torso",
                           "fact_accuracy_tail"):
                mean = [_mean_se(traj[metric][g - 1])[0] for g in gens]
                parts.append(f"{metric}=" + "/".join(f"{m:.3g}" for m in mean))
            lines.append(f"alpha={alpha:g} {name:14s} t={'/'.join(map(str, gens))}: " + " ".join(parts))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    num_chains = args.num_chains or (8 if args.quick else 32)
    num_generations = args.num_generations or (8 if args.quick else 30)
    from collapse_theory import io, plotting

    def tables_and_figure(data):
        md, csv = table(data, num_generations)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        io.atomic_write_text(out / "tinylm_lexical_diversity.md", md)
        io.atomic_write_text(out / "tinylm_lexical_diversity.csv", csv)
        for line in summary_lines(data, num_generations):
            print(line)
        return plot(data, num_chains=num_chains, num_generations=num_generations, seed=args.seed)

    return plotting.run_figure(NAME, args.out, lambda: run(args.seed, num_chains, num_generations), tables_and_figure)


if __name__ == "__main__":
    raise SystemExit(main())

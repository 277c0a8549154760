"""Generated samples on the Shakespeare split, same prompt, seed and settings for each (issue 13):
explicit models fitted on the whole train split (the shipped default and the earlier defaults),
then, from a ``bench/warm_vs_cold.py`` run, the explicit / warm / cold / transformer models of
each training size and budget (the samples that run recorded).

    python bench/samples.py [--warm-vs-cold bench/out/warm_vs_cold.json] > docs/samples.md
"""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from saffu import SaffuConfig, SaffuModel, read_documents, shakespeare_split
from saffu.config import PREVIOUS_DEFAULTS, ROADMAP_DEFAULTS, SKIP_DEFAULTS

BENCH = Path(__file__).resolve().parent
SHAKESPEARE = BENCH.parents[0].parent / "shared" / "data" / "shakespeare"
CONFIGS = {
    "`SaffuConfig()` (radial 2 + radial 1, skip inputs, output_tau chosen by the fit)": {},
    "`SKIP_DEFAULTS` (the same with one context model, radial 2)": SKIP_DEFAULTS,
    "the roadmap defaults (`ROADMAP_DEFAULTS`: no skip inputs, tau 4, output_tau 1.5)": ROADMAP_DEFAULTS,
    "the first defaults (`PREVIOUS_DEFAULTS`: bits 256, radial 1, sum)": PREVIOUS_DEFAULTS,
}


def load_warm_vs_cold():
    """bench/warm_vs_cold.py as a module, loaded by path (as a package import, bench/tokenize.py
    would shadow the standard library's tokenize); its PROMPT, SAMPLING and samples() are shared."""
    spec = importlib.util.spec_from_file_location("warm_vs_cold", BENCH / "warm_vs_cold.py")
    module = sys.modules["warm_vs_cold"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WVC = load_warm_vs_cold()
PROMPT, SETTINGS = WVC.PROMPT, WVC.SAMPLING


def explicit_samples() -> None:
    split = shakespeare_split(SHAKESPEARE)
    train, dev = list(read_documents(split.train)), list(read_documents(split.dev))
    print(f"Fitted on the Shakespeare train split; prompt {PROMPT!r}; {SETTINGS}; dev perplexity "
          "beside each.\n")
    tokenizer = None
    for name, changes in CONFIGS.items():
        model = SaffuModel(SaffuConfig(**changes), tokenizer=tokenizer).fit(train, verbose=0)
        tokenizer = model.tokenizer  # one tokenizer for all (the configs share its settings)
        dev_ppl = model.score(dev)["perplexity"]
        print(f"## {name}: dev perplexity {dev_ppl:.1f}\n")
        print("```\n" + PROMPT + model.generate(PROMPT, **SETTINGS).strip() + "\n```\n")


def warm_vs_cold_samples(path: Path) -> None:
    """The samples a ``bench/warm_vs_cold.py`` run recorded, rendered by that script."""
    results = json.loads(path.read_text())
    print("## Explicit, warm, cold and transformer models at equal budgets\n")
    commands = [run["command"] for run in results.get("merged", [results])]
    print("From " + ", ".join(f"`{command}`" for command in commands) + " (the models of "
          "bench/RESULTS.md \"Warm vs cold backprop\"; training prefixes of the train split, "
          "CPU-second budgets).")
    print(WVC.samples(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warm-vs-cold", type=Path, help="a bench/warm_vs_cold.py JSON output")
    args = parser.parse_args()
    command = "python bench/samples.py" + (f" --warm-vs-cold {args.warm_vs_cold}"
                                           if args.warm_vs_cold else "")
    print("# Samples of SAFFU models\n")
    print(f"Made by `{command} > docs/samples.md`.\n")
    explicit_samples()
    if args.warm_vs_cold:
        warm_vs_cold_samples(args.warm_vs_cold)


if __name__ == "__main__":
    main()

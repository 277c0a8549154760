"""Generated samples of explicit models fitted on the Shakespeare train split, same prompt, seed
and settings for each (issue 13): the shipped default and the earlier defaults.

    python bench/samples.py > docs/samples.md
"""

from pathlib import Path

from saffu import SaffuConfig, SaffuModel, read_documents, shakespeare_split
from saffu.config import PREVIOUS_DEFAULTS, ROADMAP_DEFAULTS

SHAKESPEARE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "shakespeare"
PROMPT, SETTINGS = "ROMEO.\n", {"max_tokens": 80, "temperature": 0.8, "top_k": 40, "seed": 0}
CONFIGS = {
    "`SaffuConfig()` (skip inputs, output_tau chosen by the fit)": {},
    "the roadmap defaults (`ROADMAP_DEFAULTS`: no skip inputs, tau 4, output_tau 1.5)": ROADMAP_DEFAULTS,
    "the first defaults (`PREVIOUS_DEFAULTS`: bits 256, radial 1, sum)": PREVIOUS_DEFAULTS,
}


def main() -> None:
    split = shakespeare_split(SHAKESPEARE)
    train, dev = list(read_documents(split.train)), list(read_documents(split.dev))
    print("# Samples of explicit SAFFU models\n")
    print(f"Fitted on the Shakespeare train split; prompt {PROMPT!r}; {SETTINGS}; dev perplexity "
          "beside each. Made by `python bench/samples.py > docs/samples.md`.\n")
    tokenizer = None
    for name, changes in CONFIGS.items():
        model = SaffuModel(SaffuConfig(**changes), tokenizer=tokenizer).fit(train, verbose=0)
        tokenizer = model.tokenizer  # one tokenizer for all (the configs share its settings)
        dev_ppl = model.score(dev)["perplexity"]
        print(f"## {name}: dev perplexity {dev_ppl:.1f}\n")
        print("```\n" + PROMPT + model.generate(PROMPT, **SETTINGS).strip() + "\n```\n")


if __name__ == "__main__":
    main()

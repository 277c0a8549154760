"""Dev perplexity of one SaffuConfig, re-solving the output layer at several output_tau values
(the passes do not depend on it): the measurements behind the skip-input defaults (issue 13).

    python bench/prepare_split.py    # once: the tokenizer and the encoded train/dev splits
    python bench/skip_inputs.py '{"skip": 2, "output_taus": [0.4, 0.5, 0.6]}' [threads]

Prints one JSON line per output_tau (the config changes, the temperature, dev perplexity, the
fit's CPU seconds); without ``output_taus`` the fit's own choice (or the config's value). Dev
only: the test split is not read. One kernel and one BLAS thread unless told.
"""

import json
import sys
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

import saffu
from saffu import SaffuConfig, SaffuModel
from saffu.fit import solve_output
from saffu.sweep.data import SweepData

SPLIT = Path(__file__).parent / "out" / "split"


def main() -> None:
    saffu.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    threadpool_limits(1)
    data = SweepData.load(SPLIT)
    changes = json.loads(sys.argv[1])
    taus = changes.pop("output_taus", [None])
    started = time.process_time()
    model = SaffuModel(SaffuConfig(**changes), tokenizer=data.tokenizer).fit(data.splits["train"],
                                                                             verbose=0)
    fit_cpu = time.process_time() - started
    for tau in taus:
        if tau is not None:
            model.config = model.config.replace(output_tau=tau)
            solve_output(model, model.fit_state.statistics["output"])
        dev = model.score(data.splits["dev"])["perplexity"]
        print(json.dumps({**changes, "output_tau": model.config.output_tau, "dev": round(dev, 2),
                          "fit_cpu": round(fit_cpu, 1)}), flush=True)


if __name__ == "__main__":
    main()

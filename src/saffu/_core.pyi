"""Type stubs of the compiled kernels (``csrc/``). Call them through :mod:`saffu.kernels`, which
validates every input; these functions trust their caller. Parameter names and order are
``saffu._kernel_spec.KERNELS`` (checked by tests/test_kernel_registry.py)."""

import numpy as np
import numpy.typing as npt

CONTEXT_KIND_CODES: dict[str, int]
AGGREGATION_CODES: dict[str, int]

def cooc_dense_onehot(FT: npt.NDArray[np.float64], X: npt.NDArray[np.float32] | npt.NDArray[np.float64],
                      targets: npt.NDArray[np.int64], n_threads: int) -> None: ...
def cooc_sparse_onehot(FT: npt.NDArray[np.float64], indptr: npt.NDArray[np.int64],
                       indices: npt.NDArray[np.int64],
                       weights: npt.NDArray[np.float32] | npt.NDArray[np.float64],
                       targets: npt.NDArray[np.int64], n_threads: int) -> None: ...
def explicit_solve(FT: npt.NDArray[np.float64], out: npt.NDArray[np.float32] | npt.NDArray[np.float64],
                   alpha: float, tau: float, shrink: float, n_threads: int) -> None: ...
def logsumexp_rows(logits: npt.NDArray[np.float32], bias: npt.NDArray[np.float32],
                   out: npt.NDArray[np.float64], n_threads: int) -> None: ...
def logsumexp_rows_scaled(logits: npt.NDArray[np.float32], scale: float, bias: npt.NDArray[np.float32],
                          out: npt.NDArray[np.float64], n_threads: int) -> None: ...
def bytelevel_pieces(code_points: npt.NDArray[np.uint32], classes: npt.NDArray[np.uint8],
                     doc_starts: npt.NDArray[np.int64], piece_bounds: npt.NDArray[np.int64],
                     piece_ids: npt.NDArray[np.int32], first_piece: npt.NDArray[np.int32],
                     counts: npt.NDArray[np.int64], n_threads: int) -> None: ...
def saffu_expert_stats(ids: npt.NDArray[np.int32], pos: npt.NDArray[np.int32], kind: int, K: int,
                       E: npt.NDArray[np.float32], FT: npt.NDArray[np.float64],
                       T: npt.NDArray[np.float64], n_threads: int) -> None: ...
def saffu_attention_stats(ids: npt.NDArray[np.int32], pos: npt.NDArray[np.int32], kind: int, K: int,
                          E: npt.NDArray[np.float32], expert_UT: npt.NDArray[np.float32],
                          expert_b: npt.NDArray[np.float32], expert_logz: npt.NDArray[np.float32],
                          FT: npt.NDArray[np.float64], n_threads: int) -> float: ...
def saffu_hidden_stats(ids: npt.NDArray[np.int32], pos: npt.NDArray[np.int32], kind: int, K: int,
                       E: npt.NDArray[np.float32], W: npt.NDArray[np.float32], aggregation: int,
                       codes: npt.NDArray[np.float32], FT: npt.NDArray[np.float64],
                       n_threads: int) -> float: ...
def saffu_forward(ids: npt.NDArray[np.int32], pos: npt.NDArray[np.int32], kind: int, K: int,
                  E: npt.NDArray[np.float32], W: npt.NDArray[np.float32], aggregation: int,
                  UT: npt.NDArray[np.float32], start: int, stop: int, out: npt.NDArray[np.float32],
                  n_threads: int) -> int: ...
def saffu_generate(ids: npt.NDArray[np.int32], pos: npt.NDArray[np.int32], kinds: npt.NDArray[np.int32],
                   sizes: npt.NDArray[np.int32], E: npt.NDArray[np.float32], W: npt.NDArray[np.float32],
                   aggregation: int, UT: npt.NDArray[np.float32], output_t: npt.NDArray[np.float32],
                   skip_weight: npt.NDArray[np.float32], bias: npt.NDArray[np.float32],
                   banned: npt.NDArray[np.bool_], uniforms: npt.NDArray[np.float64], temperature: float,
                   top_k: int, top_p: float, stop_token: int, out: npt.NDArray[np.int32],
                   lengths: npt.NDArray[np.int32], cache_bytes: int, n_threads: int) -> None: ...

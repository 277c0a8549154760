#include "common.hpp"

namespace saffu {
void register_cooc(py::module_& m) { (void)m; }
}  // namespace saffu

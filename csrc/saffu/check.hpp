// Argument checks of the core kernels: a violated check throws std::invalid_argument (Python:
// ValueError).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace saffu {

// The message is built by the caller even when ok: call it once per argument, not per element
// (loops test the condition and throw themselves).
inline void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument(message);
}

}  // namespace saffu

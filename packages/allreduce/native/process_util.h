// Process helpers shared by the shared-memory group and the addon.
#pragma once

#include <cstdint>
#include <string>

namespace mpo {

// `what` followed by the text of the current errno.
std::string sysError(const std::string& what);

// Alive = exists and is not a zombie. kill(pid, 0) alone says "alive" for an unreaped zombie.
bool pidAlive(int32_t pid);

}  // namespace mpo

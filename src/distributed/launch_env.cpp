#include "syncbn/distributed/launch_env.h"

#include <cstdlib>
#include <optional>
#include <string>

#include "syncbn/error.h"

namespace syncbn::dist {

namespace {

const char* env(const char* name) { return std::getenv(name); }

int parse_int(const char* name, const std::string& text) {
  const bool digits_only = !text.empty() && text.size() <= 9 &&
                           text.find_first_not_of("0123456789") == std::string::npos;
  SYNCBN_CHECK(digits_only, "environment variable ", name, "='", text,
               "' is not a non-negative integer");
  return std::stoi(text);
}

std::optional<int> read_int(const char* name) {
  const char* text = env(name);
  if (!text) return std::nullopt;
  return parse_int(name, text);
}

int require_int(const char* name, const char* launcher) {
  std::optional<int> value = read_int(name);
  SYNCBN_CHECK(value.has_value(), launcher, " launch detected but ", name, " is not set");
  return *value;
}

// Tasks on node `node` from SLURM's compressed list: "4(x2),3" means 4, 4, 3.
int slurm_tasks_on_node(const char* name, const std::string& list, int node) {
  int first_node = 0;
  std::size_t start = 0;
  while (start <= list.size()) {
    std::size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    const std::string entry = list.substr(start, end - start);
    std::string tasks = entry;
    int repeat = 1;
    const std::size_t paren = entry.find("(x");
    if (paren != std::string::npos) {
      SYNCBN_CHECK(entry.back() == ')', "environment variable ", name, "='", list,
                   "' is malformed: expected entries like 4 or 4(x2)");
      tasks = entry.substr(0, paren);
      repeat = parse_int(name, entry.substr(paren + 2, entry.size() - paren - 3));
    }
    const int count = parse_int(name, tasks);
    if (node < first_node + repeat) return count;
    first_node += repeat;
    start = end + 1;
  }
  SYNCBN_FAIL("environment variable ", name, "='", list, "' lists ", first_node,
              " nodes, but SLURM_NODEID is ", node);
}

void check_placement(const LaunchEnv& placement, const char* variables) {
  SYNCBN_CHECK(placement.world_size >= 1 && placement.rank < placement.world_size, "inconsistent ",
               variables, ": rank ", placement.rank, " in a world of ", placement.world_size);
  SYNCBN_CHECK(placement.local_size == 0 || placement.local_rank < placement.local_size,
               "inconsistent ", variables, ": local rank ", placement.local_rank, " of ",
               placement.local_size, " on this host");
}

}  // namespace

LaunchEnv read_launch_env() {
  LaunchEnv placement;
  if (env("OMPI_COMM_WORLD_RANK")) {
    placement.source = "OMPI";
    placement.rank = require_int("OMPI_COMM_WORLD_RANK", "Open MPI");
    placement.world_size = require_int("OMPI_COMM_WORLD_SIZE", "Open MPI");
    placement.local_rank = require_int("OMPI_COMM_WORLD_LOCAL_RANK", "Open MPI");
    placement.local_size = require_int("OMPI_COMM_WORLD_LOCAL_SIZE", "Open MPI");
    check_placement(placement, "OMPI_COMM_WORLD_* variables");
  } else if (env("SLURM_PROCID")) {
    placement.source = "SLURM";
    placement.rank = require_int("SLURM_PROCID", "SLURM");
    placement.world_size = require_int("SLURM_NTASKS", "SLURM");
    placement.local_rank = require_int("SLURM_LOCALID", "SLURM");
    // srun sets the step's list; a batch script only the allocation's.
    const char* list_name =
        env("SLURM_STEP_TASKS_PER_NODE") ? "SLURM_STEP_TASKS_PER_NODE" : "SLURM_TASKS_PER_NODE";
    const std::optional<int> node = read_int("SLURM_NODEID");
    placement.local_size =
        env(list_name) && node ? slurm_tasks_on_node(list_name, env(list_name), *node) : 0;
    check_placement(placement, "SLURM_* variables");
  }
  return placement;
}

}  // namespace syncbn::dist

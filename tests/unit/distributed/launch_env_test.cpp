#include "syncbn/distributed/launch_env.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <string>

#include "syncbn/error.h"

namespace syncbn::dist {
namespace {

const char* const kVariables[] = {"OMPI_COMM_WORLD_RANK",
                                  "OMPI_COMM_WORLD_SIZE",
                                  "OMPI_COMM_WORLD_LOCAL_RANK",
                                  "OMPI_COMM_WORLD_LOCAL_SIZE",
                                  "SLURM_PROCID",
                                  "SLURM_NTASKS",
                                  "SLURM_LOCALID",
                                  "SLURM_NODEID",
                                  "SLURM_TASKS_PER_NODE",
                                  "SLURM_STEP_TASKS_PER_NODE"};

// Clears the launcher variables for a test and restores them afterwards, so that the test
// means the same under mpirun, srun or neither.
class LaunchEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : kVariables) {
      if (const char* value = std::getenv(name)) saved_[name] = value;
      unsetenv(name);
    }
  }
  void TearDown() override {
    for (const char* name : kVariables) unsetenv(name);
    for (const auto& [name, value] : saved_) setenv(name.c_str(), value.c_str(), 1);
  }
  static void set(const char* name, const char* value) { setenv(name, value, 1); }

  // The message of the syncbn::Error read_launch_env throws, or "" when it does not.
  static std::string error_of_read() {
    try {
      read_launch_env();
    } catch (const Error& error) {
      return error.what();
    }
    return "";
  }

 private:
  std::map<std::string, std::string> saved_;
};

TEST_F(LaunchEnvTest, WithoutALauncherIsASingleton) {
  const LaunchEnv placement = read_launch_env();
  EXPECT_EQ(placement.source, "none");
  EXPECT_EQ(placement.rank, 0);
  EXPECT_EQ(placement.world_size, 1);
  EXPECT_EQ(placement.local_rank, 0);
  EXPECT_EQ(placement.local_size, 1);
}

TEST_F(LaunchEnvTest, OpenMpiVariablesGiveThePlacement) {
  set("OMPI_COMM_WORLD_RANK", "5");
  set("OMPI_COMM_WORLD_SIZE", "8");
  set("OMPI_COMM_WORLD_LOCAL_RANK", "1");
  set("OMPI_COMM_WORLD_LOCAL_SIZE", "4");
  // Open MPI wins when mpirun runs inside a SLURM allocation.
  set("SLURM_PROCID", "0");
  set("SLURM_NTASKS", "1");
  set("SLURM_LOCALID", "0");
  const LaunchEnv placement = read_launch_env();
  EXPECT_EQ(placement.source, "OMPI");
  EXPECT_EQ(placement.rank, 5);
  EXPECT_EQ(placement.world_size, 8);
  EXPECT_EQ(placement.local_rank, 1);
  EXPECT_EQ(placement.local_size, 4);
}

TEST_F(LaunchEnvTest, SlurmVariablesGiveThePlacementWithThisNodesTaskCount) {
  set("SLURM_PROCID", "9");
  set("SLURM_NTASKS", "11");
  set("SLURM_LOCALID", "1");
  set("SLURM_NODEID", "2");
  set("SLURM_TASKS_PER_NODE", "8(x3)");         // the allocation's, overridden by the step's
  set("SLURM_STEP_TASKS_PER_NODE", "4(x2),3");  // nodes 0, 1: 4 tasks; node 2: 3
  const LaunchEnv placement = read_launch_env();
  EXPECT_EQ(placement.source, "SLURM");
  EXPECT_EQ(placement.rank, 9);
  EXPECT_EQ(placement.world_size, 11);
  EXPECT_EQ(placement.local_rank, 1);
  EXPECT_EQ(placement.local_size, 3);

  unsetenv("SLURM_STEP_TASKS_PER_NODE");
  set("SLURM_TASKS_PER_NODE", "2,1(x2),5");  // node 2 is the second of the "1(x2)"
  set("SLURM_LOCALID", "0");
  EXPECT_EQ(read_launch_env().local_size, 1);
  set("SLURM_NODEID", "3");
  EXPECT_EQ(read_launch_env().local_size, 5);
}

TEST_F(LaunchEnvTest, SlurmWithoutTasksPerNodeLeavesLocalSizeUnknown) {
  set("SLURM_PROCID", "0");
  set("SLURM_NTASKS", "2");
  set("SLURM_LOCALID", "0");
  EXPECT_EQ(read_launch_env().local_size, 0);
}

TEST_F(LaunchEnvTest, MalformedNumberIsAnErrorNamingTheVariable) {
  set("OMPI_COMM_WORLD_RANK", "0");
  set("OMPI_COMM_WORLD_SIZE", "4x");
  set("OMPI_COMM_WORLD_LOCAL_RANK", "0");
  set("OMPI_COMM_WORLD_LOCAL_SIZE", "4");
  std::string message = error_of_read();
  EXPECT_NE(message.find("OMPI_COMM_WORLD_SIZE='4x'"), std::string::npos) << message;

  set("OMPI_COMM_WORLD_SIZE", "4");
  set("OMPI_COMM_WORLD_LOCAL_RANK", "-1");
  message = error_of_read();
  EXPECT_NE(message.find("OMPI_COMM_WORLD_LOCAL_RANK='-1'"), std::string::npos) << message;

  set("OMPI_COMM_WORLD_LOCAL_RANK", "");
  message = error_of_read();
  EXPECT_NE(message.find("OMPI_COMM_WORLD_LOCAL_RANK=''"), std::string::npos) << message;
}

TEST_F(LaunchEnvTest, MissingOrInconsistentValuesAreErrors) {
  set("OMPI_COMM_WORLD_RANK", "4");
  std::string message = error_of_read();
  EXPECT_NE(message.find("OMPI_COMM_WORLD_SIZE is not set"), std::string::npos) << message;

  set("OMPI_COMM_WORLD_SIZE", "4");  // rank 4 of 4
  set("OMPI_COMM_WORLD_LOCAL_RANK", "0");
  set("OMPI_COMM_WORLD_LOCAL_SIZE", "1");
  message = error_of_read();
  EXPECT_NE(message.find("rank 4 in a world of 4"), std::string::npos) << message;

  for (const char* name : kVariables) unsetenv(name);
  set("SLURM_PROCID", "0");
  set("SLURM_NTASKS", "4");
  set("SLURM_LOCALID", "0");
  set("SLURM_NODEID", "3");
  set("SLURM_TASKS_PER_NODE", "2(x2)");
  message = error_of_read();
  EXPECT_NE(message.find("SLURM_TASKS_PER_NODE='2(x2)' lists 2 nodes"), std::string::npos)
      << message;
  set("SLURM_TASKS_PER_NODE", "2(x");
  message = error_of_read();
  EXPECT_NE(message.find("SLURM_TASKS_PER_NODE"), std::string::npos) << message;
}

}  // namespace
}  // namespace syncbn::dist

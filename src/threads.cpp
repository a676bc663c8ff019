#include "syncbn/threads.h"

#include <omp.h>

#include "syncbn/error.h"

extern "C" void openblas_set_num_threads(int);

namespace syncbn {

void set_num_threads(int n) {
  SYNCBN_CHECK(n >= 1, "number of threads must be at least 1, got ", n);
  omp_set_num_threads(n);
  openblas_set_num_threads(1);
}

int num_threads() { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

}  // namespace syncbn

#include "base/status.h"
namespace imgfs::test {}

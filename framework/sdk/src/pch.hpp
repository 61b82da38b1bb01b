// Precompiled for every target that uses LibTorch. Only LibTorch and the standard library.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

// Per-family lists of op schemas (domain, name, shape rule). op_table.cpp calls each
// Append* explicitly; a family's rules live in the .cpp file of the same name.
#pragma once

#include <vector>

#include "itkit/op_table.h"

namespace itkit::shape_rules {

void AppendElementwise(std::vector<OpSchema>& table);  // elementwise.cpp
void AppendTensorOps(std::vector<OpSchema>& table);    // tensor_ops.cpp
void AppendReduce(std::vector<OpSchema>& table);       // reduce.cpp
void AppendConv(std::vector<OpSchema>& table);         // conv.cpp
void AppendPool(std::vector<OpSchema>& table);         // pool.cpp
void AppendNorm(std::vector<OpSchema>& table);         // norm.cpp
void AppendResize(std::vector<OpSchema>& table);       // resize.cpp
void AppendMatMul(std::vector<OpSchema>& table);       // matmul.cpp
void AppendEinsum(std::vector<OpSchema>& table);       // einsum.cpp

}  // namespace itkit::shape_rules

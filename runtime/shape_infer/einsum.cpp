// Einsum: equation parsing and the shape rule.
#include <algorithm>
#include <map>

#include "shape_infer/einsum_equation.h"
#include "shape_infer/shape_rules.h"

namespace itkit::shape_rules {
namespace {

bool IsLetter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// One term of the equation ("b...d") → labels; `ellipsis_pos` receives where "..."
// stood (-1 if absent).
Result<std::vector<char>> ParseTerm(const std::string& term, int* ellipsis_pos) {
  std::vector<char> labels;
  *ellipsis_pos = -1;
  for (size_t i = 0; i < term.size(); ++i) {
    const char c = term[i];
    if (c == ' ') continue;
    if (c == '.') {
      if (term.compare(i, 3, "...") != 0 || *ellipsis_pos >= 0)
        return InvalidArgument("Einsum: malformed ellipsis in term '", term, "'");
      *ellipsis_pos = static_cast<int>(labels.size());
      i += 2;
      continue;
    }
    if (!IsLetter(c)) return InvalidArgument("Einsum: invalid character '", c, "' in term '", term, "'");
    labels.push_back(c);
  }
  return labels;
}

// Splits "lhs->rhs" and lhs at its commas; true if the output is explicit.
bool SplitEquation(const std::string& equation, std::vector<std::string>* terms, std::string* rhs) {
  std::string lhs = equation;
  const size_t arrow = equation.find("->");
  const bool explicit_output = arrow != std::string::npos;
  if (explicit_output) {
    lhs = equation.substr(0, arrow);
    *rhs = equation.substr(arrow + 2);
  }
  size_t start = 0;
  for (size_t comma; (comma = lhs.find(',', start)) != std::string::npos; start = comma + 1)
    terms->push_back(lhs.substr(start, comma - start));
  terms->push_back(lhs.substr(start));
  return explicit_output;
}

}  // namespace

Result<EinsumTerms> ParseEinsumTerms(const std::string& equation) {
  std::vector<std::string> terms;
  std::string rhs;
  EinsumTerms parsed;
  parsed.explicit_output = SplitEquation(equation, &terms, &rhs);
  int ellipsis_at = -1;
  for (const std::string& term : terms) {
    ITKIT_ASSIGN_OR_RETURN(std::vector<char> labels, ParseTerm(term, &ellipsis_at));
    parsed.ellipsis = parsed.ellipsis || ellipsis_at >= 0;
    parsed.operands.push_back(std::move(labels));
  }
  if (parsed.explicit_output) {
    ITKIT_ASSIGN_OR_RETURN(parsed.output, ParseTerm(rhs, &ellipsis_at));
    parsed.ellipsis = parsed.ellipsis || ellipsis_at >= 0;
  }
  return parsed;
}

Result<EinsumPlan> ParseEinsum(const std::string& equation, const std::vector<Shape>& shapes) {
  std::vector<std::string> terms;
  std::string rhs;
  const bool explicit_output = SplitEquation(equation, &terms, &rhs);
  if (terms.size() != shapes.size())
    return InvalidArgument("Einsum: the equation has ", terms.size(), " operands, the node ", shapes.size(), " inputs");

  EinsumPlan plan;
  std::map<char, int64_t> sizes;
  std::map<char, int> counts;
  int ellipsis_rank = 0;
  std::vector<std::vector<char>> named(terms.size());
  std::vector<int> ellipsis_at(terms.size());
  for (size_t k = 0; k < terms.size(); ++k) {
    ITKIT_ASSIGN_OR_RETURN(named[k], ParseTerm(terms[k], &ellipsis_at[k]));
    const int rank = static_cast<int>(shapes[k].size());
    const int extra = rank - static_cast<int>(named[k].size());
    if (extra < 0 || (extra > 0 && ellipsis_at[k] < 0))
      return InvalidArgument("Einsum: term '", terms[k], "' does not match operand rank ", rank);
    if (ellipsis_at[k] >= 0) ellipsis_rank = std::max(ellipsis_rank, extra);
  }
  std::vector<int64_t> ellipsis_sizes(static_cast<size_t>(ellipsis_rank), 1);
  for (size_t k = 0; k < terms.size(); ++k) {
    const Shape& shape = shapes[k];
    const int extra = static_cast<int>(shape.size()) - static_cast<int>(named[k].size());
    std::vector<char> labels;
    int dim = 0;
    for (int i = 0; i <= static_cast<int>(named[k].size()); ++i) {
      if (i == ellipsis_at[k]) {
        for (int e = 0; e < extra; ++e, ++dim) {
          // Right-aligned against the widest ellipsis, numpy style.
          const int slot = ellipsis_rank - extra + e;
          const int64_t d = shape[static_cast<size_t>(dim)];
          int64_t& s = ellipsis_sizes[static_cast<size_t>(slot)];
          if (s != d && s != 1 && d != 1)
            return InvalidArgument("Einsum: ellipsis dimensions ", s, " and ", d, " do not broadcast");
          if (d != 1) s = d;
          labels.push_back(static_cast<char>('0' + slot));
        }
      }
      if (i == static_cast<int>(named[k].size())) break;
      const char c = named[k][static_cast<size_t>(i)];
      const int64_t d = shape[static_cast<size_t>(dim++)];
      auto [it, inserted] = sizes.emplace(c, d);
      if (!inserted && it->second != d)
        return InvalidArgument("Einsum: label '", c, "' has sizes ", it->second, " and ", d);
      ++counts[c];
      labels.push_back(c);
    }
    plan.operand_labels.push_back(std::move(labels));
  }
  for (int e = 0; e < ellipsis_rank; ++e) {
    plan.labels.push_back(static_cast<char>('0' + e));
    plan.label_sizes.push_back(ellipsis_sizes[static_cast<size_t>(e)]);
  }
  for (const auto& [c, d] : sizes) {
    plan.labels.push_back(c);
    plan.label_sizes.push_back(d);
  }
  if (explicit_output) {
    int out_ellipsis = -1;
    ITKIT_ASSIGN_OR_RETURN(std::vector<char> out_named, ParseTerm(rhs, &out_ellipsis));
    for (int i = 0; i <= static_cast<int>(out_named.size()); ++i) {
      if (i == out_ellipsis)
        for (int e = 0; e < ellipsis_rank; ++e) plan.output_labels.push_back(static_cast<char>('0' + e));
      if (i == static_cast<int>(out_named.size())) break;
      const char c = out_named[static_cast<size_t>(i)];
      if (!sizes.count(c)) return InvalidArgument("Einsum: output label '", c, "' is not in any input");
      if (std::count(out_named.begin(), out_named.end(), c) != 1)
        return InvalidArgument("Einsum: output label '", c, "' repeats");
      plan.output_labels.push_back(c);
    }
    if (out_ellipsis < 0 && ellipsis_rank > 0) {
      for (int64_t s : ellipsis_sizes)
        if (s != 1) return InvalidArgument("Einsum: the output drops broadcast ellipsis dimensions");
    }
  } else {  // implicit: ellipsis dims, then labels seen once, alphabetically
    for (int e = 0; e < ellipsis_rank; ++e) plan.output_labels.push_back(static_cast<char>('0' + e));
    for (const auto& [c, n] : counts)
      if (n == 1) plan.output_labels.push_back(c);
  }
  for (char c : plan.output_labels) {
    const size_t idx = static_cast<size_t>(std::find(plan.labels.begin(), plan.labels.end(), c) - plan.labels.begin());
    plan.output_shape.push_back(plan.label_sizes[idx]);
  }
  return plan;
}

namespace {

Status InferEinsum(ShapeContext& ctx) {
  if (ctx.num_inputs() < 1) return ctx.Error("expects at least one input");
  std::vector<Shape> shapes;
  DType dtype = ctx.input_dtype(0);
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    if (!ctx.has_input(i)) return ctx.Error("input ", i, " is missing");
    if (ctx.input_dtype(i) != dtype) return ctx.Error("inputs have different dtypes");
    shapes.push_back(ctx.input_shape(i));
  }
  auto plan = ParseEinsum(ctx.attrs().GetString("equation", ""), shapes);
  if (!plan.ok()) return ctx.Error(plan.status().message());
  ctx.SetOutput(0, dtype, plan->output_shape);
  return Status::Ok();
}

}  // namespace

void AppendEinsum(std::vector<OpSchema>& table) { table.push_back({"", "Einsum", &InferEinsum}); }

}  // namespace itkit::shape_rules

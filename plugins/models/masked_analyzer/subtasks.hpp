#pragma once
// A sub-task as a restriction of the full task (SDK SubTask): the examples it keeps, the inputs of
// the other sub-tasks it blanks and the outputs it is scored on. Both the mask training of a stage
// and the analyses go through these two functions, so the two cannot disagree.
#include <modlab/dataset.hpp>
#include <modlab/model.hpp>

#include <string>
#include <vector>

namespace modlab::masked {

/// Checks that the dataset's sub-task `t` fits its spec (output and input indices in range, a
/// filter that applies to the task kind). Throws ConfigError naming the dataset and sub-task.
void check_subtask(const DatasetSpec& spec, const SubTask& t);

/// The sub-task named `name` of the dataset; ConfigError naming the key, the dataset and the
/// sub-tasks it has when there is none.
const SubTask& find_subtask(const DatasetSpec& spec, const std::string& name, const std::string& key);

/// The rows of `batch` belonging to `t` (by groups / classes), with `t`'s zeroed inputs set to 0.
/// With `keep_rows`, rows are never dropped (the batch comes from the sub-task's own split).
Batch restrict_batch(const Batch& batch, const SubTask& t, bool keep_rows = false);

/// `out.prediction`, `batch.targets` and `batch.subtask_targets` cut to `t`'s outputs (no-op when
/// `t` scores every output).
void restrict_outputs(const SubTask& t, Batch& batch, Output& out);

}  // namespace modlab::masked

#pragma once
// SIGINT / SIGTERM for the scheduler and its workers: the first asks to stop (runs checkpoint and
// return Interrupted at their next step), the scheduler kills its workers at the second.
#include <atomic>

namespace modlab::runner::interrupts {

/// Installs the handlers and clears the count.
void install();
/// Signals received since install().
int count();
/// Set by the first signal; what RunRequest::stop points to.
const std::atomic<bool>& stop_flag();
inline bool stop_requested() { return stop_flag().load(); }

}  // namespace modlab::runner::interrupts

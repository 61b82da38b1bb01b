#include "interrupts.hpp"

#include <csignal>

namespace modlab::runner::interrupts {

namespace {
volatile std::sig_atomic_t g_signals = 0;
std::atomic<bool> g_stop{false};

extern "C" void on_signal(int) {
  g_signals = g_signals + 1;
  g_stop.store(true);
}
}  // namespace

void install() {
  g_stop.store(false);
  g_signals = 0;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

int count() { return g_signals; }

const std::atomic<bool>& stop_flag() { return g_stop; }

}  // namespace modlab::runner::interrupts

#pragma once
// The `modlab` command line.

namespace modlab::runner {

/// Entry point of the modlab executable; returns its exit status (ExitCode, exit_codes.hpp).
int main(int argc, char** argv);

}  // namespace modlab::runner

#pragma once
// The `modlab` command line.

namespace modlab::runner {

/// Entry point of the modlab executable; returns the exit code (2 for bad input).
int main(int argc, char** argv);

}  // namespace modlab::runner

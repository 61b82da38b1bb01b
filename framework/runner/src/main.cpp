#include <modlab/runner/cli.hpp>
int main(int argc, char** argv) { return modlab::runner::main(argc, argv); }

# The distillation loss, sparse combination and probing are tested directly from mode_parts.
set(TEST_LIBS modlab_runner moe_parts mode_parts)

# The tree, the clustering and the latent router are tested directly from the plugin's static library.
set(TEST_LIBS modlab_runner goe_parts)

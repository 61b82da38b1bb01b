# Whole training runs of real plugins, each twice (in a population and alone): minutes under the
# sanitizers. There the population code runs through unit/test_population and the folds of every
# plugin's parameters (hier_modular's routing logits included) through plugin/test_contract.
set(TEST_NO_SANITIZE ON)

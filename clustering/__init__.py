"""Find independent sub-problems of an MDP from (s, a, s') data by mutual information.

`mutual_info`, `factorization` and `synthetic_data` are domain-agnostic (numpy, scipy,
scikit-learn only); `power_grid` is the grid2op adapter.
"""

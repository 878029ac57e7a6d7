"""Framework adapters: the array primitives per framework (``ops``), the shared class machinery
(``adapter``) and the torch kernels compiled from the formulas."""

"""Small driver scripts that run *inside* an outside stack's environment (they import the stack,
never the sandbox): the component YAMLs in ``conf/`` call them by path (``${step:stacks}/NAME.py``)
where the stack's own command line cannot be used as it is."""

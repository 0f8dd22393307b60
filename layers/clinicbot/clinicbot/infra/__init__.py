"""Infrastructure helpers: read ``template.yaml`` and create its tables elsewhere (moto, local).

Development and test tooling only; nothing here runs inside Lambda.
"""

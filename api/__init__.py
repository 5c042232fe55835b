"""The object model and its machinery: schemas, admission, selectors and the store.

Objects are plain dicts in Kubernetes shape; :mod:`swarmapply.api.admission` turns user
input into valid v1 objects, :mod:`swarmapply.api.store` keeps them with revisions.
"""

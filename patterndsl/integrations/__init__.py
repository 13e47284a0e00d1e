"""Adapters to other libraries. Each submodule imports its library on import; this
package imports none of them (`import patterndsl` never pulls in transformers)."""

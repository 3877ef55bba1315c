"""ValueLex: what values do LLMs hold, measured the way psychologists measure people.

The package follows the study's data flow: spec -> grid -> engines -> store -> construct ->
evaluate -> report.
"""

__version__ = "0.1.0"

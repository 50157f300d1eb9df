"""The shop's configuration: one table of options and the rules between them.

:mod:`.options` converts each option on its own; :mod:`.rules` checks the rules that
involve several and builds the :class:`~.rules.Settings` every entry point uses.
"""

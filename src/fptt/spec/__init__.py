"""The library's specification, without torch: every named choice (:mod:`.vocabulary`), the rules on
values that the library and the run configuration share (:mod:`.rules`). The command line builds its
parser from these without loading the library."""

"""e-prop and OSTL: eligibility traces (:mod:`.eligibility`) and the learner that turns them into
``.grad`` for any optimizer (:mod:`.learner`)."""

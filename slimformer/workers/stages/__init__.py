"""The stages of a job, one module each, in pipeline order.

    prepare -> baseline -> states -> blocks -> fewshot -> task -> search -> finalize -> report

Each stage reads what earlier stages wrote to the run folder and writes its own outputs before it
returns; the pipeline marks it done only after that, so re-running a stage is always safe
(idempotent) and a job taken over by another worker resumes at the first stage that is not done.
Stages share helpers only through `RunContext`; no stage module imports another.
"""

"""What the commands share: one-line errors at the entry points and the config folder
(:mod:`.cli`), fast start-up (:mod:`.quick_start`), quiet third-party logs, the checkpoint
registry, config checks, experiment trackers and the TensorBoard views. May import every
package below it (core, data, metrics, layers, nets, tasks, callbacks); never a command.
"""

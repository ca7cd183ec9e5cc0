;; Loops forever: stopped by its fuel or time limit.
(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $forever (br $forever))))

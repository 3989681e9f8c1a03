--- rules.ogm_ge{...}: OGM-GE (Peng et al., CVPR 2022): OGM plus generalization
-- enhancement, Gaussian noise with the std of each encoder's conv-weight gradient
-- (before scaling) + 1e-8 added to that gradient after the k scaling, for every
-- modality. Same options as rules.ogm (see rules/ogm.lua).
local ogm = require "miles.rules.ogm"

return function(opts) return ogm(opts, true) end

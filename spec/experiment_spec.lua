-- miles.experiment on the toy data set (train.toy_dataset, MLP encoders): the
-- summary of a run, the defaults it fills in, MILES's rates in the history,
-- the logs, modality selection and the errors for unknown data sets.
local experiment = require "miles.experiment"
local H = require "helpers"

describe("experiment.run", function()
  local dir, s, m
  setup(function()
    dir = H.tmpdir()
    s = experiment.run{ dataset = "toy", epochs = 2, log_dir = dir .. "/vanilla" }
    m = experiment.run{ dataset = "toy", epochs = 2, rule = "miles", rule_opts = { tau = 0.1, mu = 0.25 } }
  end)
  teardown(function() H.rmdir(dir) end)

  it("returns the best epoch's validation and test metrics of every head", function()
    assert.are.equal(2, s.epochs)
    assert.are.equal("vanilla", s.rule)
    assert.are.equal("accuracy", s.metric)
    assert.are.equal(2, #s.history)
    -- the best epoch is the first maximum of the fused validation accuracy
    local h1, h2 = s.history[1].val_accuracy_fused, s.history[2].val_accuracy_fused
    assert.are.equal(h2 > h1 and 2 or 1, s.best_epoch)
    local best = s.history[s.best_epoch]
    assert.are.equal(best.val_accuracy_fused, s.val.fused)
    assert.are.equal(best.val_accuracy_audio, s.val.audio)
    assert.are.equal(best.val_accuracy_image, s.val.image)
    for _, k in ipairs({ "fused", "audio", "image" }) do
      assert.is_true(s.test[k] >= 0 and s.test[k] <= 1, k)
    end
    assert.is_true(math.abs(s.test.delta - math.abs(s.test.audio - s.test.image)) < 1e-12)
    assert.is_true(s.seconds > 0)
  end)

  it("trains one modality alone (a unimodal baseline): its own head only, delta NaN", function()
    local u = experiment.run{ dataset = "toy", epochs = 1, modalities = { "image" } }
    assert.is_true(u.test.delta ~= u.test.delta, "delta is NaN with one modality")
    assert.is_nil(u.test.audio)
    assert.is_true(u.test.image >= 0 and u.test.image <= 1)
  end)

  it("hands autocast to the trainer", function()
    local t = experiment.trainer({ dataset = "toy", epochs = 1, quiet = true, autocast = true })
    assert.is_true(t.autocast)
    assert.is_nil(experiment.trainer({ dataset = "toy", epochs = 1, quiet = true }).autocast)
  end)

  it("fills the defaults into the configuration it returns", function()
    assert.are.equal("toy", s.config.dataset)
    assert.are.equal("concat", s.config.fusion)
    assert.are.equal(1e-3, s.config.lr)
    assert.are.equal(64, s.config.batch_size)
    assert.are.equal(0, s.config.seed)
    assert.are.equal(2, s.config.epochs)
  end)

  it("writes the logs and summary of a run with log_dir", function()
    for _, f in ipairs({ "log.csv", "log.jsonl", "summary.json" }) do
      assert.is_true(H.exists(dir .. "/vanilla/" .. f), f)
    end
    assert.truthy(H.read_file(dir .. "/vanilla/summary.json"):find('"best_epoch": ' .. s.best_epoch, 1, true))
  end)

  it("is reproducible for a seed", function()
    local again = experiment.run{ dataset = "toy", epochs = 2 }
    assert.are.same(s.test, again.test)
  end)

  it("passes rule options: MILES's decision after epoch 1 sets epoch 2's rates", function()
    assert.are.equal("miles", m.rule)
    local r1, r2 = m.history[1], m.history[2]
    assert.are.equal(1e-3, r1.lr_audio)
    assert.are.equal(1e-3, r1.lr_image)
    assert.are.equal(r1.action == "slow_1" and 2.5e-4 or 1e-3, r2.lr_audio)
    assert.are.equal(r1.action == "slow_2" and 2.5e-4 or 1e-3, r2.lr_image)
    assert.are.equal(1e-3, r2.lr_fusion)
    assert.is_number(r1.u_audio)
    assert.is_true(math.abs(r1.delta - math.abs(r1.u_audio - r1.u_image)) < 1e-12)
  end)
end)

describe("experiment.select and experiment.dataset", function()
  it("keeps the named modalities with the same labels and splits", function()
    local ds = experiment.dataset("toy")
    local one = experiment.select(ds, { "image" })
    assert.are.same({ "image" }, experiment.modalities(one))
    assert.are.equal(#ds, #one)
    assert.are.equal(#ds:split("test"), #one:split("test"))
    assert.are.equal(4, experiment.classes(one))
    H.raises(function() experiment.select(ds, { "text" }) end, "no modality 'text'", "audio, image")
  end)

  it("names an unknown data set and a missing folder", function()
    H.raises(function() experiment.dataset("mnist") end, "unknown data set 'mnist'")
    H.raises(function() experiment.dataset("smnist") end, "give the folder: smnist:/path/to/smnist")
  end)
end)

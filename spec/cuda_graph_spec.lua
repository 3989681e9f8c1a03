-- CUDA graphs (miles.cuda.graph, train.Trainer{cuda_graph = true}): a captured
-- training step replayed batch after batch gives the numbers of the same steps
-- run one op at a time; what a graph cannot hold is refused with a message and
-- leaves the GPU usable; a replay loop makes no device allocation. Without a GPU
-- the GPU cases are reported as skipped (pending); on the emulated GPU (make
-- EMU=1) the fake runtime records and replays the captured operations.
local miles = require "miles"
local H = require "helpers"
local nn, F = miles.nn, miles.F

local gpu_it = H.gpu_specs(it, describe, pending)

-- A small conv net with batch norm, its Adam over two groups, and 6 seeded batches.
local function setup()
  miles.manual_seed(60)
  local net = nn.Sequential(nn.Conv2d(2, 8, 3, { padding = 1 }), nn.BatchNorm2d(8), nn.ReLU(),
    nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, { padding = 1 }), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
    nn.Flatten(), nn.Linear(8, 5)):cuda()
  local ps = net:parameters()
  local head = { ps[#ps - 1], ps[#ps] }
  local body = {}
  for i = 1, #ps - 2 do body[i] = ps[i] end
  local opt = miles.optim.Adam({ { name = "body", params = body }, { name = "head", params = head, lr = 5e-3 } },
    { lr = 1e-3, weight_decay = 1e-4 })
  local batches = {}
  for i = 1, 6 do
    miles.manual_seed(70 + i)
    batches[i] = { x = miles.randn(8, 2, 12, 12), y = miles.randint(1, 6, { 8 }) }
  end
  return net, opt, batches
end

local function step_fn(net, opt, x, y)
  return function()
    local loss = F.cross_entropy(net(x), y)
    opt:zero_grad()
    loss:backward()
    opt:step()
    return loss:detach()
  end
end

local function with_determinism(fn)
  local det, tf32 = miles.cuda.deterministic(), miles.cuda.allow_tf32()
  miles.cuda.deterministic(true)
  miles.cuda.allow_tf32(false)
  finally(function()
    miles.cuda.deterministic(det)
    miles.cuda.allow_tf32(tf32)
  end)
  fn()
end

describe("cuda graphs", function()
  gpu_it("a captured training step replays the numbers of the eager steps #gpu", function()
    with_determinism(function()
      -- eager: six steps, the head's learning rate changed before the fifth
      local net, opt, batches = setup()
      local eager_losses = {}
      for i, b in ipairs(batches) do
        if i == 5 then opt:set_lr("head", 1e-3) end
        eager_losses[i] = step_fn(net, opt, b.x:cuda(), b.y:cuda())():item()
      end
      local want = net:state_dict()

      -- graph: step 1 as usual, step 2 captured into static tensors, 2..6 replayed
      local gnet, gopt = setup()
      assert.near(eager_losses[1], step_fn(gnet, gopt, batches[1].x:cuda(), batches[1].y:cuda())():item(), 0)
      local x, y = batches[2].x:cuda(), batches[2].y:cuda()
      local g, loss = miles.cuda.graph(step_fn(gnet, gopt, x, y))
      assert.is_true(g:nodes() > 20)
      assert.equal(2, g:updatable()) -- one fused Adam launch per group
      for i = 2, 6 do
        if i > 2 then
          x:copy_(batches[i].x)
          y:copy_(batches[i].y)
        end
        if i == 5 then gopt:set_lr("head", 1e-3) end
        g:replay()
        assert.near(eager_losses[i], loss:item(), 1e-6 * math.abs(eager_losses[i]), "loss of step " .. i)
      end
      local got = gnet:state_dict()
      for k, t in pairs(want) do
        local d = (got[k]:cpu():double() - t:cpu():double()):abs():max():item()
        assert.is_true(d <= 1e-6 * (1 + t:cpu():double():abs():max():item()), k .. " differs by " .. d)
      end
      for _, p in ipairs(gnet:parameters()) do assert.equal(6, gopt.state[p].step) end
      g:free()
      H.raises(function() g:replay() end, "this graph was freed")
    end)
  end)

  gpu_it("a step captured under bf16 autocast replays the eager autocast steps #gpu", function()
    local was, graph = miles.autocast(), nil
    local ok, err = pcall(with_determinism, function() -- (with_determinism holds the finally)
      miles.autocast(true)
      local net, opt, batches = setup()
      local eager = {}
      for i, b in ipairs(batches) do eager[i] = step_fn(net, opt, b.x:cuda(), b.y:cuda())():item() end
      local want = net:state_dict()
      local gnet, gopt = setup()
      step_fn(gnet, gopt, batches[1].x:cuda(), batches[1].y:cuda())()
      local x, y = batches[2].x:cuda(), batches[2].y:cuda()
      local g, loss = miles.cuda.graph(step_fn(gnet, gopt, x, y))
      graph = g
      miles.autocast(false) -- a replay runs as captured, whatever the switch says now
      for i = 2, 6 do
        if i > 2 then
          x:copy_(batches[i].x)
          y:copy_(batches[i].y)
        end
        g:replay()
        assert.equal("float32", loss:dtype())
        assert.near(eager[i], loss:item(), 1e-6 * math.abs(eager[i]), "loss of step " .. i)
      end
      for k, t in pairs(gnet:state_dict()) do
        assert.equal(want[k]:dtype(), t:dtype(), k)
        H.assert_close(t:cpu(), want[k]:cpu(), 1e-6, 1e-6, k)
      end
    end)
    miles.autocast(was)
    if graph then graph:free() end
    if not ok then error(err, 0) end
  end)

  gpu_it("a replay loop makes no device allocation #gpu", function()
    local net, opt, batches = setup()
    local x, y = batches[1].x:cuda(), batches[1].y:cuda()
    local step = step_fn(net, opt, x, y)
    step()
    local g = miles.cuda.graph(step)
    for _ = 1, 2 do g:replay() end
    collectgarbage()
    local before = miles.cuda.memory_stats().allocations
    for i = 1, 20 do
      x:copy_(batches[i % 6 + 1].x)
      g:replay()
    end
    miles.cuda.synchronize()
    assert.equal(before, miles.cuda.memory_stats().allocations)
    g:free()
  end)

  gpu_it("random numbers in a graph: each replay draws new ones, an eager run's #gpu", function()
    local function same(a, b) return miles.allclose(a, b, 0, 0) end
    local x = miles.ones(4, 300):cuda()
    local function step()
      -- a small temporary freed before the first draw: inside a capture its block
      -- goes back to the graph's pool, and the graph reuses it
      local t = x:sum()
      local s = t * 0
      t = nil
      collectgarbage()
      return F.dropout(x, 0.5) + miles.randn(4, 300, { device = "cuda" }) + s
    end
    miles.manual_seed(80)
    local seed_state = miles.get_rng_state()
    local g, out = miles.cuda.graph(step)
    -- (as in PyTorch, the capture claims no counters: the replays do)
    assert.are.same(seed_state, miles.get_rng_state())
    local replays = {}
    for i = 1, 3 do
      g:replay()
      replays[i] = out:cpu()
    end
    local after = miles.rand(5, { device = "cuda" }):cpu()
    -- the same three steps and the draw after, eager, from the generator state
    -- before the capture
    miles.set_rng_state(seed_state)
    for i = 1, 3 do
      assert.is_true(same(replays[i], step():cpu()), "replay " .. i)
    end
    assert.is_true(same(after, miles.rand(5, { device = "cuda" }):cpu()))
    assert.is_false(same(replays[1], replays[2]))
    -- the seed is read at each replay
    miles.manual_seed(81)
    g:replay()
    local reseeded = out:cpu()
    miles.manual_seed(81)
    assert.is_true(same(reseeded, step():cpu()))
    g:free()
    -- a capture that fails claims nothing; one that also draws on the CPU keeps
    -- what it claimed (the CPU's numbers were drawn)
    local state = miles.get_rng_state()
    H.raises(function()
      miles.cuda.graph(function() F.dropout(x, 0.5); error("stop here") end)
    end, "stop here")
    assert.are.same(state, miles.get_rng_state())
    local g2 = miles.cuda.graph(function() miles.rand(3); return F.dropout(x, 0.5) end)
    assert.equal(state.offset + 3 + x:numel(), miles.get_rng_state().offset)
    g2:free()
    -- reseeding inside the captured function, then drawing, is refused
    H.raises(function()
      miles.cuda.graph(function() miles.manual_seed(3); return F.dropout(x, 0.5) end)
    end, "after the generator was reseeded in it")
    assert.equal(1200, miles.ones(4, 300, { device = "cuda" }):sum():item())
  end)

  gpu_it("what a graph cannot hold is refused with a message, and the GPU stays usable #gpu", function()
    local net, opt, batches = setup()
    local x, y = batches[1].x:cuda(), batches[1].y:cuda()
    local function usable()
      assert.equal(6, miles.ones(6, { device = "cuda" }):sum():item())
    end
    if H.real_gpu then -- (the emulated GPU's convolutions are the CPU's: no engines)
      local x13 = miles.randn(8, 2, 13, 13):cuda() -- a size no other spec uses
      H.raises(function() miles.cuda.graph(function() return net(x13) end) end,
        "came inside a CUDA graph capture") -- a new convolution shape (or cuDNN's first use)
      usable()
    end
    F.cross_entropy(net(x), y):backward() -- the convolutions' engines, not the optimizer's state
    opt:zero_grad()
    H.raises(function() miles.cuda.graph(step_fn(net, opt, x, y)) end,
      "has no optimizer state yet: take one step before capturing")
    usable()
    step_fn(net, opt, x, y)()
    H.raises(function() miles.cuda.graph(function() return net(x):sum():item() end) end,
      "cannot read cuda:0 while a CUDA graph is being captured")
    usable()
    H.raises(function() miles.cuda.graph(function() return miles.tensor({ 1, 2 }, { device = "cuda" }) end) end,
      "cannot copy host data to cuda:0 while a CUDA graph is being captured")
    usable()
    H.raises(function() miles.cuda.graph(function() return net(miles.randn(3, 2, 20, 20):cuda()) end) end,
      "cannot copy host data") -- the input made inside the capture
    H.raises(function()
      miles.cuda.graph(function() miles.cuda.graph(function() end) end)
    end, "captures do not nest")
    usable()
    -- a group frozen after the capture no longer matches the captured launches
    local g = miles.cuda.graph(step_fn(net, opt, x, y))
    local p1 = net:parameters()[1]
    local steps = opt.state[p1].step
    opt:group("head").frozen = true
    H.raises(function() g:replay() end, "capture the graph again")
    assert.equal(steps, opt.state[p1].step) -- the failed replay counted no step
    opt:group("head").frozen = false
    g:replay() -- matches again
    assert.equal(steps + 1, opt.state[p1].step)
    -- a step outside the graph makes new gradients: the graph's would go stale
    step_fn(net, opt, x, y)()
    H.raises(function() g:replay() end, "capture the graph again")
    usable()
  end)

  gpu_it("the trainer's cuda_graph steps give the eager steps' numbers #gpu", function()
    with_determinism(function()
      local experiment = require "miles.experiment"
      local function run(graph)
        local t = experiment.trainer({ dataset = "toy", rule = "miles", epochs = 2, quiet = true,
                                       device = "cuda", cuda_graph = graph })
        t:fit()
        return t.history
      end
      local eager, graphed = run(false), run(true)
      for e = 1, 2 do
        assert.near(eager[e].train_loss, graphed[e].train_loss, 1e-5 * math.abs(eager[e].train_loss))
        assert.near(eager[e].val_accuracy_fused, graphed[e].val_accuracy_fused, 1e-9)
      end
    end)
  end)
end)

describe("cuda graphs and rules acting inside the step", function()
  local train = require "miles.train"
  local DS = train.toy_dataset{ n = 160, classes = 4, seed = 0 }

  -- Two epochs of OGM-GE (its gradient modulation and noise inside each step) on
  -- a small conv fusion model; the history.
  local function ogm_run(graph, opts)
    local t = train.Trainer{ model = H.conv_fusion_model(), dataset = DS, rule = "ogm_ge",
                             rule_opts = opts, lr = 1e-2, epochs = 2, batch_size = 32, seed = 0,
                             workers = 1, quiet = true, device = "cuda", cuda_graph = graph }
    t:fit()
    return t.history
  end

  gpu_it("OGM-GE's step is captured with the trainer's: the eager steps' numbers #gpu", function()
    with_determinism(function()
      local eager, graphed = ogm_run(false), ogm_run(true)
      for e = 1, 2 do
        assert.near(eager[e].train_loss, graphed[e].train_loss, 1e-5 * math.abs(eager[e].train_loss))
        assert.near(eager[e].val_loss_fused, graphed[e].val_loss_fused, 1e-5 * math.abs(eager[e].val_loss_fused))
        -- the epoch's mean k: every replay counted and summed
        assert.equal(eager[e].action, graphed[e].action)
        assert.truthy(eager[e].action:find("^k_audio="), eager[e].action)
      end
    end)
  end)

  gpu_it("OGM will not begin an epoch inside a capture (each replay would zero its sums) #gpu", function()
    local m = H.conv_fusion_model():cuda()
    local ctx = { model = m, order = m.order, epoch = 1,
                  batch = { y = miles.tensor({ 1, 2 }, { dtype = "int64" }):cuda() },
                  out = { latents = { audio = miles.randn(2, 16):cuda(), image = miles.randn(2, 16):cuda() } } }
    local rule = require("miles.rules").ogm()
    H.raises(function() miles.cuda.graph(function() rule.on_step(ctx) end) end,
      "rules.ogm: an epoch's first step must run outside a CUDA graph capture")
    -- with an optimizer's step, as in the trainer's graph
    for _, p in ipairs(m:parameters()) do p.grad = miles.randn(table.unpack(p:shape())):cuda() end
    local opt = miles.optim.Adam({ { name = "all", params = m:parameters() } }, { lr = 1e-3 })
    rule.on_step(ctx) -- eager: the epoch begins
    opt:step()
    local g = miles.cuda.graph(function() rule.on_step(ctx); opt:step() end)
    g:replay()
    g:replay()
    -- a replay that fails counts no step (on_replay's undo)
    opt:group("all").frozen = true
    H.raises(function() g:replay() end, "capture the graph again")
    opt:group("all").frozen = false
    rule.on_epoch_end(ctx)
    assert.truthy(ctx.log.reason:find("over 3 steps", 1, true), ctx.log.reason)
  end)

  gpu_it("a rule that reads a GPU value inside the step gets the capture's message #gpu", function()
    local rule = { name = "reads", on_step = function(ctx) return ctx.loss:item() end }
    H.raises(function()
      train.Trainer{ model = H.conv_fusion_model(), dataset = DS, rule = rule, epochs = 1,
                     batch_size = 32, seed = 0, workers = 1, quiet = true, device = "cuda",
                     cuda_graph = true }:fit()
    end, "cannot read cuda:0 while a CUDA graph is being captured")
  end)
end)

describe("cuda graphs without a GPU", function()
  it("the trainer refuses cuda_graph on the cpu", function()
    local train = require "miles.train"
    local experiment = require "miles.experiment"
    H.raises(function()
      experiment.trainer({ dataset = "toy", epochs = 1, quiet = true, cuda_graph = true })
    end, "cuda_graph needs a GPU device")
    assert.is_function(train.Trainer)
  end)

end)

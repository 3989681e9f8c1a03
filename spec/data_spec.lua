-- miles.data: splits, data sets and loaders (batches made by C worker threads).
-- Checked: splits are deterministic, disjoint and of the asked sizes; an epoch
-- covers its split exactly once; the order depends on (seed, epoch) only, not on
-- the number of workers; normalisation and each augmentation on crafted data;
-- multi-hot labels; early exit and collection stop the threads; errors name the
-- problem.
local miles = require "miles"
local data = require "miles.data"
local H = require "helpers"

-- All batches of one epoch as a list of tables.
local function collect(loader, epoch)
  local out = {}
  for batch in loader:epoch(epoch) do out[#out + 1] = batch end
  return out
end

-- The sample indices of an epoch, in order, as one Lua list.
local function order_of(loader, epoch)
  local all = {}
  for _, b in ipairs(collect(loader, epoch)) do
    for _, i in ipairs(b.index:totable()) do all[#all + 1] = i end
  end
  return all
end

-- A sorted copy of a list.
local function sorted(list)
  local c = table.move(list, 1, #list, 1, {})
  table.sort(c)
  return c
end

-- Are two tensors exactly equal (shape and values)?
local function same(a, b)
  return table.concat(a:shape(), "x") == table.concat(b:shape(), "x")
    and (a:numel() == 0 or H.max_abs_diff(a, b) == 0)
end

-- Threads of this process (from /proc).
local function thread_count()
  local p = io.popen("ls /proc/" .. miles._data.getpid() .. "/task")
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

-- A small data set: audio [n, 1, 4, 8] float32, image [n, 3, 6, 6] uint8, labels.
local function small(n, opts)
  opts = opts or {}
  miles.manual_seed(opts.seed or 1)
  local audio = miles.randn(n, 1, 4, 8)
  local image = (miles.rand(n, 3, 6, 6) * 255):to("uint8")
  local labels = miles.randint(1, 4, { n }):to("int64")
  return data.Dataset({
    modalities = { audio = audio, image = image },
    labels = labels,
    splits = opts.splits or data.random_split(n, { train = n - n // 4, val = n // 4 }, 0),
  }), audio, image, labels
end

describe("data.random_split", function()
  it("gives disjoint sorted splits of the asked sizes that cover the samples", function()
    local s = data.random_split(12000, { train = 8000, val = 2000, test = 2000 }, 0)
    assert.equal(8000, s.train:numel())
    assert.equal(2000, s.val:numel())
    assert.equal(2000, s.test:numel())
    local seen = {}
    for _, name in ipairs({ "train", "val", "test" }) do
      local list = s[name]:totable()
      for i, v in ipairs(list) do
        assert.is_nil(seen[v], "index " .. v .. " in two splits")
        seen[v] = name
        if i > 1 then assert.is_true(v > list[i - 1], "sorted") end
      end
    end
    for i = 1, 12000 do assert.truthy(seen[i], "index " .. i .. " in no split") end
  end)

  it("is deterministic for a seed and differs between seeds", function()
    local a = data.random_split(1000, { train = 700, val = 300 }, 7)
    local b = data.random_split(1000, { train = 700, val = 300 }, 7)
    local c = data.random_split(1000, { train = 700, val = 300 }, 8)
    assert.same(a.train:totable(), b.train:totable())
    assert.are_not.same(a.train:totable(), c.train:totable())
  end)

  it("does not touch the global random generator", function()
    miles.manual_seed(3)
    local x = miles.rand(4)
    miles.manual_seed(3)
    data.random_split(100, { a = 50, b = 50 }, 1)
    assert.is_true(same(x, miles.rand(4)))
  end)

  it("takes fractions and leaves part of the samples out when asked", function()
    local s = data.random_split(1001, { train = 0.8, val = 0.1, test = 0.1 }, 0)
    assert.equal(1001, s.train:numel() + s.val:numel() + s.test:numel())
    assert.is_true(math.abs(s.train:numel() - 800.8) < 1)
    local part = data.random_split(100, { a = 10, b = 20 }, 0)
    assert.equal(10, part.a:numel())
    assert.equal(20, part.b:numel())
  end)

  it("rejects sizes larger than n", function()
    local err = H.error_of(data.random_split, 12000, { train = 8000, val = 2001, test = 2000 }, 0)
    assert.truthy(err:find("add up to 12001, more than the 12000 samples", 1, true), err)
    err = H.error_of(data.random_split, 10, { train = 0.9, val = 0.2 }, 0)
    assert.truthy(err:find("more than 1", 1, true), err)
  end)
end)

describe("data.stratified_split", function()
  it("keeps the class proportions in every split", function()
    local list = {}
    for i = 1, 1000 do list[i] = i <= 100 and 1 or (i <= 400 and 2 or 3) end
    local labels = miles.tensor(list, { dtype = "int64" })
    local s = data.stratified_split(labels, { train = 0.8, val = 0.2 }, 0)
    assert.equal(800, s.train:numel())
    assert.equal(200, s.val:numel())
    local want = { train = { 80, 240, 480 }, val = { 20, 60, 120 } }
    local seen = {}
    for name, counts in pairs(want) do
      local got = { 0, 0, 0 }
      for _, i in ipairs(s[name]:totable()) do
        got[list[i]] = got[list[i]] + 1
        assert.is_nil(seen[i])
        seen[i] = true
      end
      assert.same(counts, got, name)
    end
    local again = data.stratified_split(labels, { train = 0.8, val = 0.2 }, 0)
    assert.same(s.val:totable(), again.val:totable())
    local other = data.stratified_split(labels, { train = 0.8, val = 0.2 }, 1)
    assert.are_not.same(s.val:totable(), other.val:totable())
  end)

  it("rejects multi-hot labels", function()
    local err = H.error_of(data.stratified_split, miles.zeros(10, 3), { a = 0.5 }, 0)
    assert.truthy(err:find("int64 [N] class indices", 1, true), err)
  end)
end)

describe("data.Dataset", function()
  it("describes itself and its splits", function()
    local ds = small(40)
    assert.equal(40, #ds)
    assert.equal(30, ds:split("train").n)
    assert.equal(10, #ds:split("val"))
    assert.truthy(tostring(ds):find("image uint8 40x3x6x6", 1, true))
    local tr = ds:split("train")
    assert.is_true(same(tr:labels(), ds.labels:index_select(1, tr.indices)))
    assert.is_true(same(tr:tensor("audio"), ds.modalities.audio:index_select(1, tr.indices)))
  end)

  it("takes lists of indices, converts other dtypes and makes a split 'all' by default", function()
    local ds = data.Dataset({ modalities = { x = miles.arange(5):to("float64") } })
    assert.equal("float32", ds.modalities.x:dtype())
    assert.equal(5, ds:split("all").n)
    ds = data.Dataset({ modalities = { x = miles.zeros(5) }, splits = { a = { 1, 3, 5 } } })
    assert.same({ 1, 3, 5 }, ds:split("a").indices:totable())
  end)

  it("names the problem in its errors", function()
    local a, x = miles.zeros(10, 4), miles.zeros(9, 4)
    local err = H.error_of(data.Dataset, { modalities = { audio = a, image = x } })
    assert.truthy(err:find("modality 'image' has 9 samples but 'audio' has 10", 1, true), err)
    err = H.error_of(data.Dataset, { modalities = { audio = a }, labels = miles.zeros(11, { dtype = "int64" }) })
    assert.truthy(err:find("labels have 11 rows but the modalities have 10 samples", 1, true), err)
    err = H.error_of(data.Dataset, { modalities = { audio = a }, splits = { train = { 1, 2, 11 } } })
    assert.truthy(err:find("split 'train': index 11 (entry 3) is out of range [1, 10]", 1, true), err)
    err = H.error_of(data.Dataset, { modalities = { audio = a }, splits = { val = miles.tensor({ 0, 1 }, { dtype = "int64" }) } })
    assert.truthy(err:find("split 'val': index 0 (entry 1) is out of range [1, 10]", 1, true), err)
    err = H.error_of(data.Dataset, { modalities = { audio = a }, labels = miles.tensor({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, { dtype = "int64" }), classes = { "a", "b" } })
    assert.truthy(err:find("labels range over [1, 10] but there are 2 classes", 1, true), err)
    err = H.error_of(data.Dataset, { modalities = { y = a } })
    assert.truthy(err:find("bad modality name 'y'", 1, true), err)
    err = H.error_of(data.Dataset, { modalities = { audio = a }, split = {} })
    assert.truthy(err:find("unknown option 'split'", 1, true), err)
    local ds = data.Dataset({ modalities = { audio = a }, splits = { train = { 1 }, test = { 2 } } })
    err = H.error_of(ds.split, ds, "tset")
    assert.truthy(err:find("no split 'tset' (splits: test, train)", 1, true), err)
  end)
end)

describe("data loaders", function()
  it("cover the split exactly once per epoch, with and without shuffling", function()
    local ds = small(103)
    local want = sorted(ds:split("train").indices:totable())
    for _, shuffle in ipairs({ false, true }) do
      local loader = ds:loader("train", { batch_size = 10, shuffle = shuffle, workers = 2 })
      assert.equal(8, #loader) -- 78 samples: 7 full batches and one of 8
      local batches = collect(loader, 1)
      assert.equal(8, #batches)
      for i, b in ipairs(batches) do
        local n = i < 8 and 10 or 8
        assert.same({ n, 1, 4, 8 }, b.audio:shape())
        assert.same({ n, 3, 6, 6 }, b.image:shape())
        assert.equal("float32", b.image:dtype())
        assert.same({ n }, b.y:shape())
      end
      local order = order_of(loader, 1)
      assert.same(want, sorted(order))
      if not shuffle then assert.same(want, order) end
    end
  end)

  it("drop the last partial batch with drop_last", function()
    local ds = small(103)
    local loader = ds:loader("train", { batch_size = 10, shuffle = true, drop_last = true })
    assert.equal(7, #loader)
    local order = order_of(loader, 3)
    assert.equal(70, #order)
    local set = {}
    for _, i in ipairs(order) do
      assert.is_nil(set[i])
      set[i] = true
    end
    local small_split = ds:loader("val", { batch_size = 100, drop_last = true })
    assert.equal(0, #small_split)
    assert.equal(0, #collect(small_split, 1))
  end)

  it("give each sample's labels and data with its index", function()
    local ds, audio, image, labels = small(50)
    local loader = ds:loader("train", { batch_size = 7, shuffle = true, workers = 3 })
    for _, b in ipairs(collect(loader, 2)) do
      assert.is_true(same(b.y, labels:index_select(1, b.index)))
      assert.is_true(same(b.audio, audio:index_select(1, b.index)))
      assert.is_true(same(b.image, image:index_select(1, b.index):to("float32")))
    end
  end)

  it("batch int64 ids (text tokens) as they are and refuse to augment or normalise them", function()
    local ids = miles.randint(1, 1000, { 30, 6 })
    local ds = data.Dataset({ modalities = { text = ids, x = miles.randn(30, 2) },
                              labels = miles.arange(1, 31) })
    assert.equal("int64", ds.modalities.text:dtype())
    for _, b in ipairs(collect(ds:loader("all", { batch_size = 8, shuffle = true, workers = 2 }), 1)) do
      assert.equal("int64", b.text:dtype())
      assert.is_true(same(b.text, ids:index_select(1, b.index)))
    end
    H.raises(function() ds:loader("all", { augment = { text = { noise = 0.1 } } }) end,
      "loader: modality 'text' holds int64 ids, which take no augmentation or normalisation")
    H.raises(function() ds:loader("all", { normalize = { text = { scale = 2 } } }) end, "int64 ids")
  end)

  it("repeat an order for the same seed and epoch and change it otherwise", function()
    local ds = small(200)
    local opts = { batch_size = 16, shuffle = true, seed = 5 }
    local a = order_of(ds:loader("train", opts), 1)
    local b = order_of(ds:loader("train", opts), 1)
    assert.same(a, b)
    local loader = ds:loader("train", opts)
    assert.are_not.same(a, order_of(loader, 2))
    assert.same(a, order_of(loader, 1))
    opts.seed = 6
    assert.are_not.same(a, order_of(ds:loader("train", opts), 1))
  end)

  it("count epochs from 1 when none is given", function()
    local ds = small(60)
    local loader = ds:loader("train", { batch_size = 8, shuffle = true })
    local first = order_of(loader)
    assert.equal(1, loader.current_epoch)
    local second = order_of(loader)
    assert.equal(2, loader.current_epoch)
    assert.same(first, order_of(loader, 1))
    assert.same(second, order_of(loader, 2))
  end)

  it("give identical batches for 0, 1 and 3 workers, augmentation included", function()
    local ds = small(150)
    local function run(workers)
      local loader = ds:loader("train", { batch_size = 9, shuffle = true, seed = 11,
        workers = workers, prefetch = 3,
        augment = { image = { flip = true, crop = 2 }, audio = { time_shift = 3, noise = 0.1 } },
        normalize = { image = { scale = 1 / 255, mean = { 0.5, 0.4, 0.3 }, std = { 0.2, 0.3, 0.4 } } } })
      return collect(loader, 4)
    end
    local ref = run(1)
    for _, workers in ipairs({ 0, 3 }) do
      local got = run(workers)
      assert.equal(#ref, #got)
      for i = 1, #ref do
        for _, k in ipairs({ "audio", "image", "y", "index" }) do
          assert.is_true(same(ref[i][k], got[i][k]), ("workers %d, batch %d, %s"):format(workers, i, k))
        end
      end
    end
  end)

  it("scale and normalise per channel", function()
    local ds, _, image = small(20)
    local mean, std = { 0.1, 0.2, 0.3 }, { 0.5, 1, 2 }
    local loader = ds:loader("train", { batch_size = 20,
      normalize = { image = { scale = 1 / 255, mean = mean, std = std } } })
    local b = collect(loader, 1)[1]
    local x = image:index_select(1, b.index):to("float32") / 255
    local m = miles.tensor(mean):reshape(1, 3, 1, 1)
    local s = miles.tensor(std):reshape(1, 3, 1, 1)
    H.assert_close(b.image, (x - m) / s, 1e-5, 1e-6, "normalised image")
    -- one mean/std for every channel, on a float32 source
    loader = ds:loader("train", { batch_size = 20, normalize = { audio = { mean = 1, std = 4 } } })
    b = collect(loader, 1)[1]
    H.assert_close(b.audio, (ds.modalities.audio:index_select(1, b.index) - 1) / 4, 1e-5, 1e-6)
  end)

  -- Crafted images: value 1 + y * W + x (0 marks padding).
  local function ramp(n, h, w)
    return (miles.arange(h * w):reshape(1, 1, h, w) + 1):expand(n, 1, h, w):contiguous():to("uint8")
  end

  it("flip reverses the last dim of about half the samples", function()
    local n = 200
    local ds = data.Dataset({ modalities = { image = ramp(n, 2, 5) } })
    local b = collect(ds:loader("all", { batch_size = n, augment = { image = { flip = true } } }), 1)[1]
    local plain = ramp(1, 2, 5)[1]:to("float32")
    local flipped = miles.tensor({ { 5, 4, 3, 2, 1 }, { 10, 9, 8, 7, 6 } }):reshape(1, 2, 5)
    local nflip = 0
    for i = 1, n do
      local s = b.image[i]
      if same(s, flipped) then
        nflip = nflip + 1
      else
        assert.is_true(same(s, plain), "sample " .. i .. " is neither plain nor flipped")
      end
    end
    assert.is_true(nflip > 60 and nflip < 140, "flipped " .. nflip .. " of " .. n)
  end)

  it("crop with padding shifts the image by up to the padding, filling zeros", function()
    local n, h, w, pad = 100, 6, 6, 2
    local ds = data.Dataset({ modalities = { image = ramp(n, h, w) } })
    local b = collect(ds:loader("all", { batch_size = n, augment = { image = { crop = pad } } }), 1)[1]
    local shifts = {}
    for i = 1, n do
      local s = b.image[i][1]:totable()
      local found
      for dy = -pad, pad do
        for dx = -pad, pad do
          local ok = true
          for y = 0, h - 1 do
            for x = 0, w - 1 do
              local sy, sx = y + dy, x + dx
              local want = (sy >= 0 and sy < h and sx >= 0 and sx < w) and 1 + sy * w + sx or 0
              ok = ok and s[y + 1][x + 1] == want
            end
          end
          if ok then found = dy .. "," .. dx end
        end
      end
      assert.truthy(found, "sample " .. i .. " is no shift of the image")
      shifts[found] = true
    end
    local distinct = 0
    for _ in pairs(shifts) do distinct = distinct + 1 end
    assert.is_true(distinct >= 15, distinct .. " distinct shifts of 25")
  end)

  it("time shift rolls the last dim (circular) or shifts in zeros", function()
    local n, t, max = 100, 8, 3
    local src = (miles.arange(t):reshape(1, 1, t) + 1):expand(n, 2, t):contiguous():to("float32")
    local ds = data.Dataset({ modalities = { audio = src } })
    for _, mode in ipairs({ "circular", "zero" }) do
      local b = collect(ds:loader("all", { batch_size = n,
        augment = { audio = { time_shift = max, shift_mode = mode } } }), 1)[1]
      local seen = {}
      for i = 1, n do
        local rows = b.audio[i]:totable()
        local found
        for s = -max, max do
          local ok = true
          for x = 0, t - 1 do
            local from = x - s
            local want
            if mode == "circular" then
              want = from % t + 1
            else
              want = (from >= 0 and from < t) and from + 1 or 0
            end
            ok = ok and rows[1][x + 1] == want and rows[2][x + 1] == want
          end
          if ok then found = s end
        end
        assert.truthy(found, mode .. ": sample " .. i .. " is no shift")
        seen[found] = true
      end
      for s = -max, max do assert.truthy(seen[s], mode .. ": shift " .. s .. " never drawn") end
    end
  end)

  it("adds Gaussian noise of the asked std, different per sample and epoch", function()
    local n = 400
    local ds = data.Dataset({ modalities = { audio = miles.zeros(n, 1, 64) } })
    local loader = ds:loader("all", { batch_size = n, augment = { audio = { noise = 0.5 } } })
    local x = collect(loader, 1)[1].audio
    local mean = x:mean():item()
    local std = x:std():item()
    assert.is_true(math.abs(mean) < 0.01, "mean " .. mean)
    assert.is_true(math.abs(std - 0.5) < 0.01, "std " .. std)
    local within = x:abs():lt(0.5):to("float32"):mean():item()
    assert.is_true(math.abs(within - 0.6827) < 0.01, "P(|z| < 1) " .. within)
    assert.is_false(same(x[1], x[2]))
    local again = collect(loader, 1)[1].audio
    assert.is_true(same(x, again), "same epoch, same noise")
    assert.is_false(same(x, collect(loader, 2)[1].audio), "another epoch, other noise")
  end)

  it("pass multi-hot labels through as float32 rows", function()
    local n = 30
    local y = miles.rand(n, 5):gt(0.5):to("float32")
    local ds = data.Dataset({ modalities = { x = miles.randn(n, 3) }, labels = y,
      classes = { "a", "b", "c", "d", "e" } })
    for _, b in ipairs(collect(ds:loader("all", { batch_size = 8, shuffle = true }), 1)) do
      assert.equal("float32", b.y:dtype())
      assert.is_true(same(b.y, y:index_select(1, b.index)))
    end
  end)

  it("read memory-mapped and non-contiguous sources", function()
    local ds, audio, image = small(40)
    local path = os.tmpname()
    miles.save(path, image)
    local mapped = data.Dataset({ modalities = { audio = audio, image = miles.load_mmap(path) },
      labels = ds.labels, splits = ds.splits })
    local a = collect(ds:loader("train", { batch_size = 8, shuffle = true }), 1)
    local b = collect(mapped:loader("train", { batch_size = 8, shuffle = true }), 1)
    for i = 1, #a do assert.is_true(same(a[i].image, b[i].image)) end
    os.remove(path)
    local t = miles.randn(10, 4, 3)
    local tds = data.Dataset({ modalities = { x = t:transpose(2, 3) } })
    local batch = collect(tds:loader("all", { batch_size = 10 }), 1)[1]
    assert.is_true(same(batch.x, t:transpose(2, 3):contiguous()))
  end)

  it("stop their threads when an epoch is left early and when collected", function()
    miles.randn(1000):sum() -- start any lazily made thread pools first
    collectgarbage()
    collectgarbage()
    local threads0 = thread_count()
    local live0 = miles.memory().cpu.live_bytes
    local ds = small(300)
    local loader = ds:loader("train", { batch_size = 4, workers = 3, prefetch = 8 })
    assert.equal(threads0 + 3, thread_count())
    local k = 0
    for _ in loader:epoch(1) do
      k = k + 1
      if k == 2 then break end
    end
    -- the loader still works after leaving an epoch early
    assert.equal(#loader, #collect(loader, 2))
    local n = 0
    for _ in loader:epoch(3) do
      n = n + 1
      if n == 1 then break end
    end
    loader, ds = nil, nil
    collectgarbage()
    collectgarbage()
    assert.equal(threads0, thread_count())
    assert.equal(live0, miles.memory().cpu.live_bytes)
  end)

  it("close at once with :close() or a <close> variable", function()
    local threads0 = thread_count()
    local ds = small(40)
    do
      local loader <close> = ds:loader("train", { batch_size = 4, workers = 2 })
      assert.equal(threads0 + 2, thread_count())
      loader:epoch(1)()
    end
    assert.equal(threads0, thread_count())
    local loader = ds:loader("train", { batch_size = 4, workers = 2 })
    loader:close()
    loader:close()
    assert.is_true(loader:closed())
    assert.equal(threads0, thread_count())
    local err = H.error_of(function() return loader:epoch(1) end)
    assert.truthy(err:find("loader is closed", 1, true), err)
  end)

  it("raise a worker's error in the loop, after the batches before it", function()
    local ds = small(100)
    for _, workers in ipairs({ 0, 2 }) do
      local loader = ds:loader("train", { batch_size = 5, workers = workers, _fail_batch = 3 })
      local got = 0
      local ok, err = pcall(function()
        for _ in loader:epoch(1) do got = got + 1 end
      end)
      assert.is_false(ok)
      assert.equal(2, got)
      assert.truthy(tostring(err):find("loader: batch 3: out of memory (simulated for tests)", 1, true), tostring(err))
      -- the next epoch fails the same way, and the loader can still be closed
      assert.has_error(function() for _ in loader:epoch(2) do end end)
      loader:close()
    end
  end)

  it("give the same batches with pin_memory, pinned only when there is a GPU", function()
    local ds = small(40)
    local function run(pin)
      local loader = ds:loader("train", { batch_size = 7, shuffle = true, seed = 3, workers = 2,
        pin_memory = pin, augment = { audio = { noise = 0.1 } } })
      local got = {}
      for batch in loader:epoch(1) do
        got[#got + 1] = batch
        for _, k in ipairs({ "audio", "image", "y" }) do
          assert.equal(pin and miles.cuda.is_available(), batch[k]:is_pinned())
        end
        assert.is_false(batch.index:is_pinned())
      end
      return got
    end
    local ref, got = run(false), run(true)
    assert.equal(#ref, #got)
    for i = 1, #ref do
      for _, k in ipairs({ "audio", "image", "y", "index" }) do
        assert.is_true(same(ref[i][k], got[i][k]), ("batch %d, %s"):format(i, k))
      end
    end
  end)

  it("reject bad options with a message that names them", function()
    local ds = small(20)
    local cases = {
      { { batchsize = 4 }, "loader: unknown option 'batchsize'" },
      { { batch_size = 0 }, "batch_size must be in [1," },
      { { batch_size = 2.5 }, "batch_size must be an integer" },
      { { workers = -1 }, "workers must be in [0, 64]" },
      { { shuffle = "yes" }, "shuffle must be a boolean" },
      { { pin_memory = 1 }, "pin_memory must be a boolean" },
      { { augment = { video = { flip = true } } }, "augment.video: no such modality (modalities: audio, image)" },
      { { augment = { image = { rotate = 10 } } }, "augment.image: unknown option 'rotate'" },
      { { augment = { audio = { shift_mode = "wrap", time_shift = 2 } } }, "shift_mode must be 'circular' or 'zero'" },
      { { augment = { audio = { noise = -1 } } }, "noise must be a number >= 0" },
      { { normalize = { image = { mean = { 0.5, 0.5 } } } }, "mean has 2 values but the samples have 3 channels" },
      { { normalize = { image = { std = { 0, 1, 1 } } } }, "std[1] must be > 0" },
    }
    for _, case in ipairs(cases) do
      local err = H.error_of(ds.loader, ds, "train", case[1])
      assert.truthy(err:find(case[2], 1, true), err)
    end
    local flat = data.Dataset({ modalities = { audio = miles.zeros(5, 16) } })
    local err = H.error_of(flat.loader, flat, "all", { augment = { audio = { crop = 2 } } })
    assert.truthy(err:find("crop needs samples with height and width", 1, true), err)
    assert.equal(1, #ds:loader("train")) -- the defaults are fine: 15 samples, batches of 64
  end)
end)

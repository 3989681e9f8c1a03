--- MM-IMDb (Arevalo et al. 2017) from its public layout: movie posters and plot
-- summaries with 23 genres as multi-hot labels; the text kept as token ids from
-- a simple vocabulary, for a text encoder.
--
--   local mmimdb = require "miles.data.mmimdb"
--   local ds, info = mmimdb.load("/data/mmimdb")
--   -- ds.modalities.image uint8 [N, 3, 224, 224], ds.modalities.text [N, 256]
--   -- token ids, ds.labels float32 [N, 23] (ds.classes = M.GENRES), ds.vocab
--   -- (ds.vocab[id] is the word of id), splits train/val/test
--
-- Layout: <root>/split.json ({"train": [ids], "dev": [ids], "test": [ids]};
-- 15552/2608/7799 in the release) and <root>/dataset/<id>.json ({"plot": [
-- strings], "genres": [strings], ...}) with <root>/dataset/<id>.jpeg.
--
-- Rows: the train ids, then dev, then test, in split.json's order; the splits
-- are train, val (= dev) and test. Labels: one column per genre of M.GENRES
-- (MM-IMDb's 23, most frequent first); other genres are ignored. Image: the
-- poster as RGB, resized to size x size (the whole poster, its aspect not
-- kept). Text: the longest plot (as MMBT's preprocessing), lowercased and cut
-- into words at everything but the ASCII letters.
--
-- Vocabulary, from the train split only: the words seen at least min_count
-- times, most frequent first (ties alphabetical), at most max_vocab of them.
-- Ids are 1-based as every index in miles: 1 = "<pad>", 2 = "<unk>" (a word
-- not in the vocabulary), words from 3; #ds.vocab is the embedding size and a
-- text shorter than max_len is padded with 1 after its words (longer ones are
-- cut). The vocabulary is kept in the cache with the arrays.
--
-- Options: size (224), max_len (256), min_count (2), max_vocab (20000),
-- cache_dir, rebuild, quiet (seed is accepted and unused: the splits are fixed).
local core = require "miles.core"
local data = require "miles.data"
local layout = require "miles.data.layout"

local M = {}

M.NAME = "mmimdb"
M.GENRES = { "Drama", "Comedy", "Romance", "Thriller", "Crime", "Action", "Adventure", "Horror",
  "Documentary", "Mystery", "Sci-Fi", "Fantasy", "Family", "Biography", "War", "History", "Music",
  "Animation", "Musical", "Western", "Sport", "Short", "Film-Noir" }
M.PAD, M.UNK = 1, 2
M.DEFAULTS = { size = 224, max_len = 256, min_count = 2, max_vocab = 20000 }

-- split.json's lists, in row order, with the names the data set gives them.
local PARTS = { { "train", "train" }, { "dev", "val" }, { "test", "test" } }

--- The words of a text: lowercased, split at everything but ASCII letters.
function M.words(text)
  local out = {}
  for w in text:lower():gmatch("%a+") do out[#out + 1] = w end
  return out
end

-- The ids of split.json by part, checked: {train = {...}, dev = ..., test = ...}.
local function read_split(root)
  local path = root .. "/split.json"
  local what = 'split.json with lists "train", "dev" and "test" of movie ids'
  local split = layout.read_json(M.NAME, path, what)
  if type(split) ~= "table" then layout.expected(M.NAME, what, path) end
  for _, part in ipairs(PARTS) do
    local ids = split[part[1]]
    if type(ids) ~= "table" then layout.expected(M.NAME, what .. ' (no "' .. part[1] .. '")', path) end
    for i, id in ipairs(ids) do
      if type(id) == "number" then id = ("%d"):format(id) end
      ids[i] = id
    end
  end
  return split
end

-- A movie's longest plot and its multi-hot genres (a list of 0/1).
local function read_movie(path, genre_index)
  local movie = layout.read_json(M.NAME, path, "a movie's JSON file, dataset/<id>.json")
  local plots = type(movie) == "table" and movie.plot
  if type(plots) == "string" then plots = { plots } end
  if type(plots) ~= "table" or type(movie.genres) ~= "table" then
    error(("mmimdb: %s has no \"plot\" list or no \"genres\" list"):format(path), 0)
  end
  local plot = ""
  for _, p in ipairs(plots) do
    if type(p) == "string" and #p > #plot then plot = p end
  end
  local hot = {}
  for g = 1, #M.GENRES do hot[g] = 0 end
  for _, g in ipairs(movie.genres) do
    if genre_index[g] then hot[genre_index[g]] = 1 end
  end
  return plot, hot
end

-- The vocabulary (a list, index = id) from the word lists of the training rows.
local function build_vocab(texts, n_train, o)
  local counts = {}
  for i = 1, n_train do
    for _, w in ipairs(texts[i]) do counts[w] = (counts[w] or 0) + 1 end
  end
  local words = {}
  for w, c in pairs(counts) do
    if c >= o.min_count then words[#words + 1] = w end
  end
  table.sort(words, function(a, b)
    if counts[a] ~= counts[b] then return counts[a] > counts[b] end
    return a < b
  end)
  local vocab = { "<pad>", "<unk>" }
  table.move(words, 1, math.min(#words, o.max_vocab), 3, vocab)
  return vocab
end

-- Build the arrays of the movies (called by the cache).
local function build(movies, n_train, o, progress)
  local genre_index = {}
  for g, name in ipairs(M.GENRES) do genre_index[name] = g end
  local n = #movies
  local image = core.zeros(n, 3, o.size, o.size, { dtype = "uint8" })
  local texts, hots = {}, {}
  for i, m in ipairs(movies) do
    local plot
    plot, hots[i] = read_movie(m.json, genre_index)
    texts[i] = M.words(plot)
    image[i]:copy_(layout.resize(layout.rgb(core.io.read_jpeg(m.jpeg)), o.size, o.size))
    progress("movies", i, n)
  end
  local vocab = build_vocab(texts, n_train, o)
  local id_of = {}
  for id, w in ipairs(vocab) do id_of[w] = id end
  local rows = {}
  for i, words in ipairs(texts) do
    local row = {}
    for j = 1, o.max_len do row[j] = words[j] and (id_of[words[j]] or M.UNK) or M.PAD end
    rows[i] = row
  end
  return {
    image = image,
    text = n > 0 and core.tensor(rows, { dtype = "int64" }) or core.zeros(0, o.max_len, { dtype = "int64" }),
    labels = n > 0 and core.tensor(hots, { dtype = "float32" }) or core.zeros(0, #M.GENRES),
    vocab = layout.string_tensor(table.concat(vocab, "\n")),
  }
end

--- The data set in folder root as a miles.data.Dataset with splits
-- train/val/test and its vocabulary as ds.vocab (see the header), and the
-- cache's info {built, path, ...}.
function M.load(root, opts)
  local o = layout.options(M.NAME, opts, M.DEFAULTS)
  root = layout.root(M.NAME, root)
  local split = read_split(root)
  local movies, files, counts = {}, {}, {}
  for p, part in ipairs(PARTS) do
    counts[p] = #split[part[1]]
    for _, id in ipairs(split[part[1]]) do
      local base = root .. "/dataset/" .. id
      movies[#movies + 1] = { json = base .. ".json", jpeg = base .. ".jpeg" }
      files[#files + 1] = base .. ".json"
      files[#files + 1] = base .. ".jpeg"
    end
  end
  layout.check_all(M.NAME, files, "the files of every movie in split.json, dataset/<id>.json and "
    .. "dataset/<id>.jpeg")
  files[#files + 1] = root .. "/split.json"
  local params = { size = o.size, max_len = o.max_len, min_count = o.min_count,
    max_vocab = o.max_vocab, genres = M.GENRES, version = 1 }
  local arrays, info = layout.cached(M.NAME, root, params, files,
    function(progress) return build(movies, counts[1], o, progress) end, o)
  local vocab = {}
  for w in (layout.tensor_string(arrays.vocab) .. "\n"):gmatch("([^\n]*)\n") do vocab[#vocab + 1] = w end
  local ds = data.Dataset({
    modalities = { image = arrays.image, text = arrays.text },
    labels = arrays.labels, classes = M.GENRES,
    splits = { train = layout.range(1, counts[1]), val = layout.range(counts[1] + 1, counts[2]),
               test = layout.range(counts[1] + counts[2] + 1, counts[3]) },
  })
  ds.vocab = vocab
  return ds, info
end

return M

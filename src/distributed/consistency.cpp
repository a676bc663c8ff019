#include "syncbn/distributed/consistency.h"

#include <algorithm>
#include <iomanip>
#include <optional>
#include <sstream>

#include "syncbn/error.h"

namespace syncbn::dist {

namespace {

// Fields as "<length>:<bytes>", so that keys and values may hold any character.
void encode_field(std::string& out, const std::string& field) {
  out += std::to_string(field.size());
  out += ':';
  out += field;
}

std::vector<std::string> decode_fields(const std::string& text) {
  std::vector<std::string> fields;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t colon = text.find(':', at);
    SYNCBN_CHECK(colon != std::string::npos, "corrupt settings encoding");
    const std::size_t length = std::stoul(text.substr(at, colon - at));
    SYNCBN_CHECK(colon + 1 + length <= text.size(), "corrupt settings encoding");
    fields.push_back(text.substr(colon + 1, length));
    at = colon + 1 + length;
  }
  return fields;
}

// "rank 2", "ranks 1-3, 5": ranks in increasing order, runs as ranges, at most a few runs.
std::string format_ranks(const std::vector<int>& ranks) {
  constexpr std::size_t kMaxRuns = 8;
  std::ostringstream out;
  out << (ranks.size() == 1 ? "rank " : "ranks ");
  std::size_t runs = 0;
  for (std::size_t i = 0; i < ranks.size();) {
    std::size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (runs == kMaxRuns) {
      out << " and " << ranks.size() - i << " more";
      break;
    }
    out << (runs ? ", " : "") << ranks[i];
    if (j > i) out << '-' << ranks[j];
    ++runs;
    i = j + 1;
  }
  return out.str();
}

// "A on rank 2, B on ranks 3-5": the differing ranks grouped by what they have, in the order
// of each description's lowest rank. descriptions[r] is empty for ranks that agree with rank 0.
std::string describe_others(const std::vector<std::string>& descriptions,
                            const std::vector<bool>& differs) {
  std::vector<std::string> order;
  std::vector<std::vector<int>> ranks;
  for (int r = 0; r < static_cast<int>(descriptions.size()); ++r) {
    if (!differs[r]) continue;
    auto found = std::find(order.begin(), order.end(), descriptions[r]);
    if (found == order.end()) {
      order.push_back(descriptions[r]);
      ranks.emplace_back();
      found = order.end() - 1;
    }
    ranks[found - order.begin()].push_back(r);
  }
  std::string text;
  for (std::size_t g = 0; g < order.size(); ++g) {
    text += (g ? ", " : "") + order[g] + " on " + format_ranks(ranks[g]);
  }
  return text;
}

std::string show_value(const std::string& value) { return value.empty() ? "''" : value; }

using Settings = std::vector<std::pair<std::string, std::string>>;

// The first setting that differs from rank 0's, as a sentence; nullopt when all agree.
std::optional<std::string> first_setting_difference(const std::vector<Settings>& per_rank) {
  const int size = static_cast<int>(per_rank.size());
  std::size_t longest = 0;
  for (const Settings& settings : per_rank) longest = std::max(longest, settings.size());
  for (std::size_t i = 0; i < longest; ++i) {
    auto entry = [&](int r) -> const std::pair<std::string, std::string>* {
      return i < per_rank[r].size() ? &per_rank[r][i] : nullptr;
    };
    const auto* reference = entry(0);
    std::vector<bool> differs(size, false);
    bool any = false;
    bool same_keys = reference != nullptr;  // every differing rank has rank 0's key, or none
    for (int r = 1; r < size; ++r) {
      const auto* mine = entry(r);
      differs[r] = (mine == nullptr) != (reference == nullptr) || (mine && *mine != *reference);
      any = any || differs[r];
      if (differs[r] && mine && reference && mine->first != reference->first) same_keys = false;
    }
    if (!any) continue;
    std::vector<std::string> descriptions(size);
    if (same_keys) {
      // "batch-size is 32 on rank 0 but 16 on rank 2"
      for (int r = 1; r < size; ++r) {
        if (differs[r]) descriptions[r] = entry(r) ? show_value(entry(r)->second) : "not set";
      }
      return reference->first + " is " + show_value(reference->second) + " on rank 0 but " +
             describe_others(descriptions, differs);
    }
    // Different key names at this position: "setting 3 is 'lr' on rank 0 but 'momentum' ..."
    auto key_of = [&](int r) { return entry(r) ? "'" + entry(r)->first + "'" : "nothing"; };
    for (int r = 1; r < size; ++r) {
      if (differs[r]) descriptions[r] = key_of(r);
    }
    return "setting " + std::to_string(i + 1) + " is " + key_of(0) + " on rank 0 but " +
           describe_others(descriptions, differs);
  }
  return std::nullopt;
}

// Every rank's settings, indexed by rank. From here on every rank decides from the same gathered
// data, so all throw or none does.
std::vector<Settings> gather_settings(Communicator& comm, const Settings& settings) {
  std::string encoded;
  for (const auto& [key, value] : settings) {
    encode_field(encoded, key);
    encode_field(encoded, value);
  }
  const std::vector<std::string> gathered = comm.allgather_strings(encoded);
  std::vector<Settings> per_rank;
  for (const std::string& text : gathered) {
    const std::vector<std::string> fields = decode_fields(text);
    Settings decoded;
    for (std::size_t f = 0; f + 1 < fields.size(); f += 2) {
      decoded.emplace_back(fields[f], fields[f + 1]);
    }
    per_rank.push_back(std::move(decoded));
  }
  return per_rank;
}

std::string hex64(uint64_t value) {
  std::ostringstream out;
  out << "0x" << std::hex << std::setw(16) << std::setfill('0') << value;
  return out.str();
}

}  // namespace

void check_consistent(Communicator& comm, const Settings& settings, const std::string& what) {
  const std::vector<Settings> per_rank = gather_settings(comm, settings);
  if (auto difference = first_setting_difference(per_rank)) {
    SYNCBN_FAIL(what, " differs across ranks: ", *difference);
  }
}

void check_same_signature(Communicator& comm, const std::vector<std::string>& lines,
                          const std::string& what) {
  std::string encoded;
  for (const std::string& line : lines) encode_field(encoded, line);
  const std::vector<std::string> gathered = comm.allgather_strings(encoded);
  std::vector<std::vector<std::string>> per_rank;
  std::size_t longest = 0;
  for (const std::string& text : gathered) {
    per_rank.push_back(decode_fields(text));
    longest = std::max(longest, per_rank.back().size());
  }
  const int size = static_cast<int>(per_rank.size());
  for (std::size_t i = 0; i < longest; ++i) {
    // 'fc.weight [10, 64]', or "no line (it has 60 lines)" past the end of a rank's list.
    auto line_of = [&](int r) {
      return i < per_rank[r].size()
                 ? "'" + per_rank[r][i] + "'"
                 : "no line (it has " + std::to_string(per_rank[r].size()) + " lines)";
    };
    std::vector<bool> differs(size, false);
    std::vector<std::string> descriptions(size);
    bool any = false;
    for (int r = 1; r < size; ++r) {
      const bool has_line = i < per_rank[r].size();
      differs[r] =
          has_line != (i < per_rank[0].size()) || (has_line && per_rank[r][i] != per_rank[0][i]);
      if (differs[r]) descriptions[r] = line_of(r);
      any = any || differs[r];
    }
    if (!any) continue;
    SYNCBN_FAIL(what, " differs across ranks at line ", i + 1, ": ", line_of(0), " on rank 0 but ",
                describe_others(descriptions, differs));
  }
}

void check_same_data(Communicator& comm, const std::vector<DataSummary>& datasets,
                     const std::string& what) {
  // Two settings per dataset, sizes at even positions and fingerprints at odd ones.
  Settings settings;
  for (const DataSummary& data : datasets) {
    settings.emplace_back(data.label + " samples", std::to_string(data.samples));
    settings.emplace_back(data.label + " fingerprint", hex64(data.fingerprint));
  }
  const std::vector<Settings> per_rank = gather_settings(comm, settings);
  const int size = static_cast<int>(per_rank.size());
  // rank r's value at position i ("" when it has none), and whether it differs from rank 0's.
  auto value = [&](int r, std::size_t i) {
    return i < per_rank[r].size() ? per_rank[r][i].second : std::string();
  };
  auto differences = [&](std::size_t i, std::vector<std::string>& descriptions) {
    std::vector<bool> differs(size, false);
    for (int r = 1; r < size; ++r) {
      differs[r] = value(r, i) != value(0, i);
      if (differs[r]) descriptions[r] = value(r, i).empty() ? "nothing" : value(r, i);
    }
    return differs;
  };
  // Sizes first: a rank with fewer samples runs out of batches before the others, the hang
  // this check exists to prevent, and the count says more than a fingerprint.
  for (int pass = 0; pass < 2; ++pass) {
    for (std::size_t d = 0; d < datasets.size(); ++d) {
      const std::size_t i = 2 * d + pass;
      std::vector<std::string> descriptions(size);
      const std::vector<bool> differs = differences(i, descriptions);
      if (std::find(differs.begin(), differs.end(), true) == differs.end()) continue;
      const std::string& label = datasets[d].label;
      if (pass == 0) {
        // "the training set has 60000 samples on rank 0 but 59000 on rank 1"
        SYNCBN_FAIL(what, " differs across ranks: the ", label, " set has ", value(0, i),
                    " samples on rank 0 but ", describe_others(descriptions, differs));
      }
      SYNCBN_FAIL(what, " differs across ranks: the ", label, " set has the same size (",
                  value(0, i - 1), " samples) on every rank but different content: fingerprint ",
                  value(0, i), " on rank 0 but ", describe_others(descriptions, differs),
                  " (every rank must read the same data: is a copy partial or altered?)");
    }
  }
}

}  // namespace syncbn::dist

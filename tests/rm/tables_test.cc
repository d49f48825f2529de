// VirtualHandleTable, ObjectTable and SessionTable bookkeeping, without a TPM.
#include <gtest/gtest.h>

#include "rm/object_table.h"
#include "rm/session_table.h"
#include "rm/virtual_handle_table.h"

namespace tpmrmd::rm {
namespace {

TEST(VirtualHandleTable, AllocatesAscendingFrom0x80000000AndNeverReuses) {
  VirtualHandleTable t;
  EXPECT_EQ(t.allocate(10), 0x80000000u);
  EXPECT_EQ(t.allocate(11), 0x80000001u);
  EXPECT_TRUE(t.erase(0x80000000u));
  EXPECT_FALSE(t.find(0x80000000u));
  EXPECT_EQ(t.allocate(12), 0x80000002u);  // the freed handle is not handed out again
  EXPECT_EQ(t.find(0x80000002u), 12u);
  EXPECT_EQ(t.handles_from(0x80000001u), (std::vector<TPM2_HANDLE>{0x80000001u, 0x80000002u}));
  EXPECT_EQ(t.handles_from(0x80000002u), (std::vector<TPM2_HANDLE>{0x80000002u}));
  EXPECT_TRUE(t.handles_from(0x80000003u).empty());
}

// The counter wraps at the end of the range and skips handles still live; a full range refuses.
TEST(VirtualHandleTable, WrapsAndSkipsLiveHandles) {
  VirtualHandleTable t(4);  // 0x80000000..0x80000003
  EXPECT_EQ(t.allocate(1), 0x80000000u);
  EXPECT_EQ(t.allocate(2), 0x80000001u);
  EXPECT_EQ(t.allocate(3), 0x80000002u);
  t.erase(0x80000002u);
  EXPECT_EQ(t.allocate(4), 0x80000003u);
  EXPECT_EQ(t.allocate(5), 0x80000002u);  // wrapped past the two live ones
  EXPECT_FALSE(t.allocate(6));           // all four live
  t.erase(0x80000000u);
  EXPECT_EQ(t.allocate(7), 0x80000000u);
}

TEST(VirtualHandleTable, TheDefaultRangeIsTheWholeTransientRange) {
  EXPECT_EQ(VirtualHandleTable::kFullRange, 0x01000000u);
  VirtualHandleTable t;
  EXPECT_EQ(t.allocate(1), 0x80000000u);
}

TEST(ObjectTable, LruVictimSkipsPinnedSavedAndUnevictable) {
  ObjectTable t;
  ObjectEntry a;
  a.physical = 0x80000000;
  a.last_use = 5;
  ObjectEntry b;
  b.physical = 0x80000001;
  b.last_use = 3;
  ObjectEntry c;  // saved
  c.last_use = 1;
  ObjectId ia = t.add(a), ib = t.add(b), ic = t.add(c);
  (void)ic;
  EXPECT_EQ(t.resident_count(), 2u);
  EXPECT_EQ(t.lru_victim({}, 9), ib);
  EXPECT_EQ(t.lru_victim({ib}, 9), ia);
  t.find(ia)->unevictable_tick = 9;
  EXPECT_FALSE(t.lru_victim({ib}, 9));
  EXPECT_EQ(t.lru_victim({ib}, 10), ia);
}

TEST(SessionTable, OldestSavedIsBySequenceNotInsertion) {
  SessionTable t;
  SessionEntry s1;
  s1.owner = 1;
  s1.resident = false;
  s1.sequence = 300;
  SessionEntry s2 = s1;
  s2.sequence = 100;
  SessionEntry s3;
  s3.owner = 2;
  s3.resident = true;
  t.put(0x02000000, s1);
  t.put(0x03000001, s2);
  t.put(0x02000002, s3);
  EXPECT_EQ(t.oldest_saved(), 0x03000001u);
  EXPECT_EQ(t.resident_count(), 1u);
  EXPECT_EQ(t.lru_victim({}, 1), 0x02000002u);
  EXPECT_FALSE(t.lru_victim({0x02000002u}, 1));
  EXPECT_EQ(t.owned(2), (std::set<TPM2_HANDLE>{0x02000002u}));
  EXPECT_EQ(t.owned(1), (std::set<TPM2_HANDLE>{0x02000000u, 0x03000001u}));
  t.set_owner(0x02000002u, 1);
  EXPECT_TRUE(t.owned(2).empty());
  EXPECT_EQ(t.owned(1).size(), 3u);
  t.erase(0x02000000u);
  EXPECT_EQ(t.owned(1).size(), 2u);
}

TEST(SessionTable, TokensAndAbandonedOrder) {
  SessionTable t;
  SessionEntry a;
  a.resident = false;
  a.client_token = Bytes{1, 2, 3};
  a.abandoned_at = 7;
  SessionEntry b = a;
  b.client_token = Bytes{4, 5};
  b.abandoned_at = 2;
  SessionEntry c;
  c.owner = 3;
  t.put(0x02000001, a);
  t.put(0x02000002, b);
  t.put(0x02000003, c);
  EXPECT_EQ(t.find_by_token(Bytes{4, 5}), 0x02000002u);
  EXPECT_FALSE(t.find_by_token(Bytes{4}));
  EXPECT_FALSE(t.find_by_token(Bytes{4, 5, 6}));
  EXPECT_EQ(t.abandoned_oldest_first(), (std::vector<TPM2_HANDLE>{0x02000002u, 0x02000001u}));
  EXPECT_EQ(t.abandoned_count(), 2u);
}

}  // namespace
}  // namespace tpmrmd::rm

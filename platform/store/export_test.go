package store

// SetHints replaces the store's hints (FollowIndexes) with ids: index name and value
// → sorted IDs; nil turns them off.
func (s *Store[T]) SetHints(ids map[[2]string][]string) {
	if ids == nil {
		s.hints.reset(nil)
		return
	}
	m := map[string][]string{}
	for k, v := range ids {
		m[s.indexPrefix(k[0], k[1])] = v
	}
	s.hints.reset(m)
}

// Hints are the IDs the hints list for index name's value, and whether hints are
// kept.
func (s *Store[T]) Hints(name, value string) ([]string, bool) {
	return s.hints.next(s.indexPrefix(name, value), "", 1<<30)
}

# Included by _cache.pyx: the frequency sketch behind TinyLFU admission.
#
# A count-min sketch of recent access frequencies: 4 rows of 4-bit-style counters
# (saturating at 15, as in TinyLFU: popularity must be recent), all halved every
# ``10 * capacity`` counts so that old popularity fades. Made with the first entry
# for capacities up to ``EAGER_SKETCH`` (at most 1 MB), else when the cache is first
# half full (``cells`` is NULL until then: no counts, every frequency 0).
#
# A halving is made in slices of ``AGE_SLICE`` counters, the first at once and one by each
# later get (``CacheCore._tick``): halving a 1M-entry cache's 16 MB at once stalled the get
# that did it 20-50 ms. Meanwhile some counters are halved and some not yet, for a few
# thousand gets: admission compares them a little unevenly, as it does right after any halving.

from libc.stdlib cimport malloc, free
from libc.string cimport memset
from libc.stdint cimport uint64_t, uint8_t

cdef enum: AGE_SLICE = 8192  # counters halved at once, and by each later get, while a halving is under way


cdef struct Sketch:
    uint8_t* cells  # 4 rows of (width_mask + 1) counters
    uint64_t width_mask
    Py_ssize_t adds  # counts since the last halving
    Py_ssize_t reset_at  # halve at this many counts
    Py_ssize_t to_halve  # counters still to halve, from the front (0: no halving under way)


cdef int sketch_init(Sketch* sk, Py_ssize_t capacity) except -1:
    """(Re)make the sketch for a cache of ``capacity`` entries: 4 counters per entry a row."""
    cdef Py_ssize_t width = 64
    cdef uint8_t* cells
    while width < 4 * capacity:
        width *= 2
    cells = <uint8_t*> malloc(4 * width)
    if not cells:
        raise MemoryError("cannot allocate the cache's frequency sketch")
    memset(cells, 0, 4 * width)
    free(sk.cells)
    sk.cells = cells
    sk.width_mask = width - 1
    sk.adds = 0
    sk.reset_at = 10 * capacity
    sk.to_halve = 0
    return 0


cdef inline bint sketch_fits(Sketch* sk, Py_ssize_t capacity) noexcept:
    return 4 * capacity <= <Py_ssize_t> (sk.width_mask + 1)


cdef void sketch_free(Sketch* sk) noexcept:
    free(sk.cells)


cdef inline uint64_t _sketch_cell(Sketch* sk, uint64_t h, uint64_t row) noexcept:
    h = (h + row * 0x9E3779B97F4A7C15ULL) * 0xBF58476D1CE4E5B9ULL
    return row * (sk.width_mask + 1) + ((h ^ (h >> 31)) & sk.width_mask)


cdef inline bint sketch_count(Sketch* sk, uint64_t h) noexcept:
    """Count one access; True when the sketch is due for halving (the caller starts it: see
    ``sketch_age``)."""
    cdef uint64_t r
    cdef uint8_t* cell
    if sk.cells == NULL:  # not made yet: the cache was never half full
        return False
    for r in range(4):
        cell = sk.cells + _sketch_cell(sk, h, r)
        if cell[0] < 15:
            cell[0] += 1
    sk.adds += 1
    return sk.adds >= sk.reset_at


cdef void sketch_age(Sketch* sk) noexcept:
    """Start halving every counter (every ``reset_at`` counts, or when asked) and halve the first
    slice; ``sketch_halve`` does the rest. One under way already goes on: it covers this one."""
    sk.adds = 0
    if sk.cells != NULL and not sk.to_halve:
        sk.to_halve = 4 * <Py_ssize_t> (sk.width_mask + 1)
        sketch_halve(sk)


cdef void sketch_halve(Sketch* sk) noexcept:
    """Halve the next ``AGE_SLICE`` counters of a halving under way: old popularity fades."""
    cdef uint64_t* words  # eight counters at a time (none exceeds 15: no bit crosses into the next)
    cdef Py_ssize_t i, end = sk.to_halve, start = max(0, end - AGE_SLICE)
    words = <uint64_t*> (sk.cells + start)  # local: the compiler may vectorise the loop
    for i in range((end - start) // 8):
        words[i] = (words[i] >> 1) & 0x7F7F7F7F7F7F7F7FULL
    sk.to_halve = start


cdef inline int sketch_frequency(Sketch* sk, uint64_t h) noexcept:
    cdef uint64_t r
    cdef int best = 255, c
    if sk.cells == NULL:
        return 0
    for r in range(4):
        c = sk.cells[_sketch_cell(sk, h, r)]
        if c < best:
            best = c
    return best

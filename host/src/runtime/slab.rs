//! Linear memories and fiber stacks cut from a few large mappings, so that a
//! live agent adds no memory mappings of its own.
//!
//! The kernel allows a process `vm.max_map_count` mappings (65,530 by
//! default). Wasmtime's own allocator gives every instance a reserved region
//! for its memory and a stack with a guard page, about 4.8 mappings per agent,
//! which caps a host near 13,600 agents. Here memories and stacks are slots in
//! large read-write mappings made with `MAP_NORESERVE`, so only touched pages
//! cost memory, and a freed slot's pages go back to the kernel with
//! `MADV_DONTNEED`, which also zeroes them for the next agent. Neither call
//! splits a mapping.
//!
//! What this gives up, and why that is sound:
//! - Memories have no guard region. Compiled code checks every access
//!   against the memory's current length: the engine reserves nothing
//!   (`memory_reservation(0)`), so no memory counts as fitting a reservation
//!   and none is compiled to check against one. A freed slot is zeroed whole,
//!   not only as far as the memory grew. A memory that outgrows its slot
//!   moves to a mapping of its own.
//! - Stacks have no guard page. Wasmtime holds wasm to `max_wasm_stack`
//!   below wherever it enters wasm, and a guest can be entered twice on one
//!   stack: its `run`, and its `cabi_realloc` while an import returns a string
//!   or list (a realloc cannot call imports, so no deeper). The fiber stack
//!   is sized for both plus ample host frames (see `FIBER_STACK`). A canary
//!   at each stack's low end is checked when the stack is freed; if anything
//!   wrote there the process aborts rather than run on with a damaged
//!   neighbour.
//!
//! (Both rules were found wanting by review and fixed: the first draft sized
//! stacks for one entry, and reserved 8 MiB, which let a memory with a small
//! declared maximum be compiled to check against the slot, not its length.)

use std::io;
use std::ops::Range;
use std::ptr;
use std::sync::{Arc, Mutex};

use wasmtime::{LinearMemory, MemoryCreator, MemoryType, StackCreator, StackMemory, format_err};

/// Bytes of each memory slot: a Rust agent's memory (1 MiB of stack plus its
/// data and heap) grows within it; bigger ones move out.
const MEMORY_SLOT: usize = 8 << 20;
/// Memory slots per mapping (4 GiB of address space, none of it committed).
const MEMORY_SLOTS_PER_MAPPING: usize = 512;
/// Stack slots per mapping.
const STACK_SLOTS_PER_MAPPING: usize = 1024;
/// Written at the low end of every stack and checked when it is freed.
const CANARY: u64 = 0x5741_5745_c0ff_ee00;

/// Equal slots of address space, taken from mappings made as needed and
/// never returned to the kernel while the pool lives (their pages are).
struct Pool {
    slot: usize,
    per_mapping: usize,
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    mappings: Vec<(usize, usize)>,
    /// Freed slots, most recent last (reused first: its page tables are warm).
    free: Vec<usize>,
    /// The untouched rest of the newest mapping.
    fresh: Range<usize>,
}

impl Pool {
    fn new(slot: usize, per_mapping: usize) -> Arc<Pool> {
        Arc::new(Pool {
            slot,
            per_mapping,
            state: Mutex::new(PoolState::default()),
        })
    }

    /// A zero-filled slot.
    fn take(&self) -> io::Result<usize> {
        let mut state = self.state.lock().expect("slab pool poisoned");
        if let Some(addr) = state.free.pop() {
            return Ok(addr);
        }
        if state.fresh.is_empty() {
            let len = self.slot * self.per_mapping;
            let addr = map(len)?;
            state.mappings.push((addr, len));
            state.fresh = addr..addr + len;
        }
        let addr = state.fresh.start;
        state.fresh.start += self.slot;
        Ok(addr)
    }

    /// Return a slot, zeroed whole: a guest never wrote past its memory's
    /// length, but clearing the untouched pages too costs next to nothing and
    /// leaves no room for doubt.
    fn give_back(&self, addr: usize) {
        // SAFETY: the slot is ours and nothing refers to it any more.
        let zeroed = unsafe { libc::madvise(addr as *mut _, self.slot, libc::MADV_DONTNEED) } == 0;
        // A slot that could not be cleared is never handed out again.
        if zeroed {
            self.state
                .lock()
                .expect("slab pool poisoned")
                .free
                .push(addr);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let state = self.state.get_mut().expect("slab pool poisoned");
        for &(addr, len) in &state.mappings {
            // SAFETY: every slot holds an `Arc<Pool>`, so none is in use.
            unsafe { libc::munmap(addr as *mut _, len) };
        }
    }
}

/// A private, zero-filled, read-write mapping of `len` bytes that commits
/// nothing until touched.
fn map(len: usize) -> io::Result<usize> {
    // SAFETY: a new anonymous mapping aliases nothing.
    let addr = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(addr as usize)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// Memories and stacks for one engine.
pub struct Slabs {
    memories: Arc<Pool>,
    stacks: Arc<Pool>,
    stack_size: usize,
}

impl Slabs {
    /// Pools for memories and for stacks of `stack_size` bytes (the engine's
    /// `async_stack_size`).
    pub fn new(stack_size: usize) -> Arc<Slabs> {
        let stack_size = stack_size.next_multiple_of(page_size());
        Arc::new(Slabs {
            memories: Pool::new(MEMORY_SLOT, MEMORY_SLOTS_PER_MAPPING),
            stacks: Pool::new(stack_size, STACK_SLOTS_PER_MAPPING),
            stack_size,
        })
    }
}

// SAFETY: memories are zero-filled, page-aligned, and stay where they are
// while they fit their capacity; see `SlabMemory`.
unsafe impl MemoryCreator for Slabs {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        _maximum: Option<usize>,
        _reserved_size_in_bytes: Option<usize>,
        guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        if guard_size_in_bytes != 0 {
            return Err("slab memories have no guard region; configure a guard size of 0".into());
        }
        let place = if minimum <= MEMORY_SLOT {
            let addr = self
                .memories
                .take()
                .map_err(|e| format!("cannot map memory for an agent: {e}"))?;
            Place::Slot(self.memories.clone(), addr)
        } else {
            Place::own(minimum).map_err(|e| format!("cannot map {minimum} bytes of memory: {e}"))?
        };
        Ok(Box::new(SlabMemory {
            place,
            size: minimum,
        }))
    }
}

/// Where a memory's bytes are.
enum Place {
    /// A slot of the shared pool.
    Slot(Arc<Pool>, usize),
    /// A mapping of its own, for a memory bigger than a slot.
    Own { addr: usize, len: usize },
}

impl Place {
    fn own(size: usize) -> io::Result<Place> {
        let len = size.max(1).next_multiple_of(page_size());
        Ok(Place::Own {
            addr: map(len)?,
            len,
        })
    }

    fn addr(&self) -> usize {
        match self {
            Place::Slot(_, addr) | Place::Own { addr, .. } => *addr,
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Place::Slot(pool, _) => pool.slot,
            Place::Own { len, .. } => *len,
        }
    }
}

/// A linear memory in a slot, or in its own mapping once it outgrows one.
struct SlabMemory {
    place: Place,
    size: usize,
}

impl SlabMemory {
    /// Move to a mapping of its own with room for `new_size` bytes.
    fn grow_out(&mut self, new_size: usize) -> wasmtime::Result<()> {
        let failed = |e: io::Error| format_err!("cannot grow a memory to {new_size} bytes: {e}");
        // Room to grow a while before moving again.
        let want = new_size
            .max(self.place.capacity().saturating_mul(2))
            .next_multiple_of(page_size());
        match &mut self.place {
            Place::Own { addr, len } => {
                // SAFETY: `addr..addr + len` is our own mapping; the kernel
                // moves it whole and zero-fills the growth.
                let moved =
                    unsafe { libc::mremap(*addr as *mut _, *len, want, libc::MREMAP_MAYMOVE) };
                if moved == libc::MAP_FAILED {
                    return Err(failed(io::Error::last_os_error()));
                }
                *addr = moved as usize;
                *len = want;
            }
            Place::Slot(pool, slot) => {
                let addr = map(want).map_err(failed)?;
                // SAFETY: both ranges are ours, distinct, and `size` fits both.
                unsafe { ptr::copy_nonoverlapping(*slot as *const u8, addr as *mut u8, self.size) };
                pool.give_back(*slot);
                self.place = Place::Own { addr, len: want };
            }
        }
        Ok(())
    }
}

// SAFETY: the bytes up to `byte_capacity` are mapped read-write and zero
// until written; growth within it never moves the base.
unsafe impl LinearMemory for SlabMemory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.place.capacity()
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if new_size > self.place.capacity() {
            self.grow_out(new_size)?;
        }
        self.size = self.size.max(new_size);
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.place.addr() as *mut u8
    }
}

impl Drop for SlabMemory {
    fn drop(&mut self) {
        match &self.place {
            Place::Slot(pool, addr) => pool.give_back(*addr),
            // SAFETY: our own mapping, no longer referred to.
            Place::Own { addr, len } => unsafe {
                libc::munmap(*addr as *mut _, *len);
            },
        }
    }
}

// SAFETY: stacks are page-aligned, zero-filled slots of `stack_size` bytes.
unsafe impl StackCreator for Slabs {
    fn new_stack(&self, size: usize, _zeroed: bool) -> wasmtime::Result<Box<dyn StackMemory>> {
        wasmtime::ensure!(
            size <= self.stack_size,
            "a fiber stack of {size} bytes does not fit the slab's {} byte slots",
            self.stack_size
        );
        let addr = self
            .stacks
            .take()
            .map_err(|e| format_err!("cannot map a fiber stack: {e}"))?;
        // SAFETY: the slot is ours and at least a page long.
        unsafe { ptr::write(addr as *mut u64, CANARY) };
        Ok(Box::new(SlabStack {
            pool: self.stacks.clone(),
            addr,
        }))
    }
}

/// A fiber stack in a slot; it grows down from the slot's top.
struct SlabStack {
    pool: Arc<Pool>,
    addr: usize,
}

// SAFETY: the slot is mapped read-write and page-aligned.
unsafe impl StackMemory for SlabStack {
    fn top(&self) -> *mut u8 {
        (self.addr + self.pool.slot) as *mut u8
    }

    fn range(&self) -> Range<usize> {
        self.addr..self.addr + self.pool.slot
    }

    fn guard_range(&self) -> Range<*mut u8> {
        self.addr as *mut u8..self.addr as *mut u8
    }
}

impl Drop for SlabStack {
    fn drop(&mut self) {
        // SAFETY: the slot is ours until given back.
        if unsafe { ptr::read(self.addr as *const u64) } != CANARY {
            eprintln!("wawe: a fiber stack overflowed into its neighbour; aborting");
            std::process::abort();
        }
        self.pool.give_back(self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(slabs: &Slabs, minimum: usize) -> Box<dyn LinearMemory> {
        let ty = MemoryType::new(0, None);
        slabs.new_memory(ty, minimum, None, None, 0).unwrap()
    }

    #[test]
    fn a_freed_slot_comes_back_zeroed() {
        let slabs = Slabs::new(64 << 10);
        let first = memory(&slabs, 1 << 16);
        let addr = first.as_ptr();
        // SAFETY: within the memory's size.
        unsafe { addr.add(100).write(7) };
        drop(first);
        let second = memory(&slabs, 1 << 16);
        assert_eq!(second.as_ptr(), addr, "the freed slot is reused first");
        // SAFETY: as above.
        assert_eq!(unsafe { addr.add(100).read() }, 0);
    }

    #[test]
    fn a_memory_that_outgrows_its_slot_moves_with_its_bytes() {
        let slabs = Slabs::new(64 << 10);
        let mut m = memory(&slabs, 1 << 16);
        // SAFETY: within the memory's size.
        unsafe { m.as_ptr().add(5).write(42) };
        let before = m.as_ptr();
        m.grow_to(MEMORY_SLOT / 2).unwrap();
        assert_eq!(m.as_ptr(), before, "growth within the slot stays put");
        m.grow_to(MEMORY_SLOT + (1 << 16)).unwrap();
        assert!(m.byte_capacity() >= MEMORY_SLOT + (1 << 16));
        // SAFETY: within the memory's size.
        unsafe {
            assert_eq!(m.as_ptr().add(5).read(), 42);
            assert_eq!(m.as_ptr().add(MEMORY_SLOT).read(), 0);
        }
        m.grow_to(4 * MEMORY_SLOT).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { m.as_ptr().add(5).read() }, 42);
    }

    /// A core module with one memory of 1 page (at most 2) and functions to
    /// read, write and grow it.
    const SMALL_MEMORY: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x0f, 0x03, 0x60, 0x01, 0x7f, 0x01, 0x7f, // types: (i32) -> i32,
        0x60, 0x02, 0x7f, 0x7f, 0x00, 0x60, 0x00, 0x01, 0x7f, // (i32, i32), () -> i32
        0x03, 0x04, 0x03, 0x00, 0x01, 0x02, // functions
        0x05, 0x04, 0x01, 0x01, 0x01, 0x02, // memory 1..2 pages
        0x07, 0x16, 0x03, 0x04, b'p', b'e', b'e', b'k', 0x00, 0x00, 0x04, b'p', b'o', b'k', b'e',
        0x00, 0x01, 0x04, b'g', b'r', b'o', b'w', 0x00, 0x02, // exports
        0x0a, 0x1a, 0x03, // code:
        0x07, 0x00, 0x20, 0x00, 0x28, 0x02, 0x00, 0x0b, // peek: i32.load
        0x09, 0x00, 0x20, 0x00, 0x20, 0x01, 0x36, 0x02, 0x00, 0x0b, // poke: i32.store
        0x06, 0x00, 0x41, 0x01, 0x40, 0x00, 0x0b, // grow: memory.grow 1
    ];

    /// With the runtime's own engine settings: a memory whose declared
    /// maximum fits a slot still traps past its length (it was once compiled
    /// to check against the slot), and pages it grows into on a reused slot
    /// read zero.
    #[tokio::test]
    async fn a_small_memory_traps_past_its_length_and_grows_into_zeroes() {
        let engine = wasmtime::Engine::new(&crate::runtime::engine_config()).unwrap();
        let module = wasmtime::Module::new(&engine, SMALL_MEMORY).unwrap();
        let page = 65_536i32;
        for round in 0..2 {
            let mut store = wasmtime::Store::new(&engine, ());
            store.set_epoch_deadline(1 << 20);
            let instance = wasmtime::Instance::new_async(&mut store, &module, &[])
                .await
                .unwrap();
            let peek = instance
                .get_typed_func::<i32, i32>(&mut store, "peek")
                .unwrap();
            let poke = instance
                .get_typed_func::<(i32, i32), ()>(&mut store, "poke")
                .unwrap();
            let grow = instance
                .get_typed_func::<(), i32>(&mut store, "grow")
                .unwrap();
            for beyond in [page, 2 * page, 3 << 20] {
                assert!(
                    peek.call_async(&mut store, beyond).await.is_err(),
                    "round {round}: a read at {beyond} of a 1-page memory did not trap"
                );
            }
            assert_eq!(grow.call_async(&mut store, ()).await.unwrap(), 1);
            assert_eq!(
                peek.call_async(&mut store, page + 4).await.unwrap(),
                0,
                "round {round}: a grown page is not zero"
            );
            poke.call_async(&mut store, (page + 4, 0x5a5a))
                .await
                .unwrap();
        }
    }

    #[test]
    fn many_memories_share_one_mapping() {
        let slabs = Slabs::new(64 << 10);
        let count = || {
            std::fs::read_to_string("/proc/self/maps")
                .unwrap()
                .lines()
                .count()
        };
        let first = memory(&slabs, 1 << 16);
        let before = count();
        let more: Vec<_> = (0..200).map(|_| memory(&slabs, 1 << 16)).collect();
        let stacks: Vec<_> = (0..200)
            .map(|_| slabs.new_stack(64 << 10, true).unwrap())
            .collect();
        // Other threads of the test binary may map a little meanwhile.
        assert!(count() <= before + 10, "{before} -> {}", count());
        drop((first, more, stacks));
    }
}

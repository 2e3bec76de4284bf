# frozen_string_literal: true

module BerryMQ
  # A local pull queue: stores every matching message sent after it was created, first in,
  # first out.
  #
  #   queue = BerryMQ::Queue.new("task:*")
  #   message = queue.get                 # waits until a message comes
  #   message = queue.get(timeout: 2)     # waits at most 2 s, then raises BerryMQ::Empty
  #   message = queue.get_nowait          # or raises BerryMQ::Empty at once
  #
  # A bounded queue (maxsize > 0) that is full refuses the message: the sender's twitter
  # raises BerryMQ::QueueFull (nothing is dropped silently). The bus holds a queue by weak
  # reference; #close stops it receiving.
  class Queue
    attr_reader :pattern, :maxsize

    def initialize(pattern, maxsize: 0, bus: BerryMQ.bus)
      @pattern = Identifier.new(pattern)
      @maxsize = maxsize
      @items = []
      @lock = Mutex.new
      @ready = ConditionVariable.new
      @closed = false
      @subscription = bus.subscribe(Subscription.new(bus, @pattern, target: self,
                                                     method_name: :put, answers: false))
    end

    # Stores +message+ (called by the bus); raises QueueFull when a bounded queue is full.
    def put(message)
      @lock.synchronize do
        if @maxsize.positive? && @items.size >= @maxsize
          raise QueueFull, "the queue of #{@pattern} is full (#{@maxsize} messages); " \
                           "#{message.identifier} was not stored"
        end
        @items << message
        @ready.signal
      end
      nil
    end

    # The next message. Waits (at most +timeout+ seconds, or forever when nil) when
    # +block+ is true; raises BerryMQ::Empty when nothing came.
    def get(block: true, timeout: nil)
      timeout = BerryMQ.wait_seconds(timeout, "get: timeout", nil_ok: true)
      deadline = timeout && (BerryMQ.monotonic + timeout)
      @lock.synchronize do
        if @items.empty?
          raise Empty, "the queue of #{@pattern} is empty" if !block || @closed
          unless BerryMQ.wait_for(@ready, @lock, deadline) { !@items.empty? || @closed }
            raise Empty, "nothing came to the queue of #{@pattern} within #{timeout} s"
          end
          raise Empty, "the queue of #{@pattern} was closed" if @items.empty?
        end
        @items.shift
      end
    end

    # The next message, or BerryMQ::Empty at once.
    def get_nowait
      get(block: false)
    end

    def size
      @lock.synchronize { @items.size }
    end
    alias qsize size

    def empty?
      size.zero?
    end

    def full?
      @maxsize.positive? && size >= @maxsize
    end

    def closed?
      @closed
    end

    # Stops receiving; what is stored can still be taken, then get raises Empty.
    def close
      @subscription.cancel
      @lock.synchronize do
        @closed = true
        @ready.broadcast
      end
      nil
    end
  end
end

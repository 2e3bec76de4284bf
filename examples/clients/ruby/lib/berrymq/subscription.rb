# frozen_string_literal: true

require "weakref"

module BerryMQ
  # One receiver following one pattern; what the registering calls return. #cancel stops
  # it. A block or callable is held strongly; an object (a Follower instance, a Queue) is
  # held by weak reference, so one that is garbage-collected stops receiving by itself.
  class Subscription
    attr_reader :pattern, :guard, :bus

    # +callable+ is called with the message; or +target+ (held weakly unless +weak+ is
    # false) gets +method_name+ called on it. A +guard+ returning false/nil skips the
    # message: for a target it runs with self being the target (instance_exec).
    def initialize(bus, pattern, callable: nil, target: nil, method_name: nil, guard: nil,
                   weak: true, answers: true)
      @bus = bus
      @pattern = Identifier.new(pattern)
      @callable = callable
      @method_name = method_name
      @guard = guard
      @answers = answers
      @target_id = target&.__id__
      @target = target && weak ? WeakRef.new(target) : target
      @weak = target && weak
    end

    # Whether this receiver's return value counts as a reply to BerryMQ.ask (queues don't).
    def answers?
      @answers
    end

    # The object this subscription calls, or nil once it was garbage-collected.
    def target
      return @target unless @weak

      @target.weakref_alive? ? @target.__getobj__ : nil
    rescue WeakRef::RefError
      nil
    end

    def alive?
      @callable || target ? true : false
    end

    # Whether this subscription calls +object+ (the object itself, or its callable).
    def for?(object)
      object.equal?(@callable) || (@target_id == object.__id__ && target.equal?(object))
    end

    # Calls the receiver when the guard lets the message through. Returns [true, value],
    # or [false, nil] when skipped (guard refused, or the target is gone).
    def call(message)
      if @callable
        return [false, nil] if @guard && !@guard.call(message)

        [true, @callable.call(message)]
      else
        object = target
        return [false, nil] if object.nil?
        return [false, nil] if @guard && !object.instance_exec(message, &@guard)

        [true, object.public_send(@method_name, message)]
      end
    end

    # A name for logs and ask's errors.
    def describe
      if @callable
        @callable.respond_to?(:name) && @callable.name ? @callable.name.to_s : "block"
      else
        "#{target&.class}##{@method_name}"
      end
    end

    # Stops this receiver (idempotent).
    def cancel
      @bus.unsubscribe(self)
      nil
    end
  end
end

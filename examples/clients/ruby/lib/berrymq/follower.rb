# frozen_string_literal: true

module BerryMQ
  # Methods as receivers, declared in the class:
  #
  #   class Logger
  #     include BerryMQ::Follower
  #
  #     following("*:log")
  #     def receive_log(message)
  #       puts message.args.first
  #     end
  #
  #     following("*:error") { |message| message.kwargs[:level] == "high" }  # a guard
  #     def receive_error(message) ... end
  #   end
  #
  #   logger = Logger.new   # this instance receives from now on
  #   logger.unfollow       # ... until this (or until it is garbage-collected)
  #
  # `following(pattern)` applies to the next method defined (several `following` lines
  # may stack on one method; `following(pattern, :name)` names the method instead). Every
  # instance is registered when it is created (after its initialize ran) and is held by
  # weak reference: keep a reference to it for as long as it should receive. A guard
  # block runs with self being the instance and gets the message; false or nil skips it.
  # `following` before `def self.name` registers the class method once, held strongly.
  module Follower
    def self.included(base)
      base.extend(ClassMethods)
      base.prepend(Registration)
    end

    # Registers the instance once its initialize ran.
    module Registration
      def initialize(...)
        super(...)
        follow
      end
    end

    # The class-level declarations.
    module ClassMethods
      # Marks the next method defined (or +method_name+) as a receiver of +pattern+.
      def following(pattern, method_name = nil, &guard)
        ident = Identifier.new(pattern) # a bad pattern fails here, at the declaration
        if method_name
          berrymq_declared << [ident, guard, method_name.to_sym]
        else
          (@berrymq_pending ||= []) << [ident, guard]
        end
        nil
      end

      # [[pattern, guard, method name], ...] of this class and its ancestors.
      def berrymq_followings
        ancestors.flat_map do |a|
          a.instance_variable_defined?(:@berrymq_declared) ? a.instance_variable_get(:@berrymq_declared) : []
        end
      end

      def berrymq_declared
        @berrymq_declared ||= []
      end

      def method_added(name)
        super
        pending = @berrymq_pending
        return unless pending

        @berrymq_pending = nil
        pending.each { |ident, guard| berrymq_declared << [ident, guard, name] }
      end

      def singleton_method_added(name)
        super
        pending = @berrymq_pending
        return unless pending && name != :singleton_method_added

        @berrymq_pending = nil
        pending.each do |ident, guard|
          BerryMQ.bus.subscribe(Subscription.new(BerryMQ.bus, ident, target: self,
                                                 method_name: name, guard: guard, weak: false))
        end
      end
    end

    # Starts receiving (done by new; again after unfollow). Returns the subscriptions.
    def follow(bus = BerryMQ.bus)
      self.class.berrymq_followings.map do |ident, guard, name|
        bus.subscribe(Subscription.new(bus, ident, target: self, method_name: name, guard: guard))
      end
    end

    # Stops receiving; returns how many subscriptions were cancelled.
    def unfollow(bus = BerryMQ.bus)
      bus.unfollow(self)
    end
  end
end
